"""DeepInversion and Adaptive DeepInversion (arXiv 1912.08795): image priors, synthesis, the data-free data source
and the data-free distillation compressor."""
