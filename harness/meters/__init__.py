"""Meters: each measures one quantity following ../shared/METHODOLOGY.md and reports its conditions."""
