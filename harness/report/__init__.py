"""Reports built from the results store: flat rows (export) and the plotly HTML report."""
