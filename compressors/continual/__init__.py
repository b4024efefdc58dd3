"""Continual multi-task compressors: PackNet (arXiv 1711.05769) and Piggyback (arXiv 1801.06519).

Shared pieces: :mod:`heads` (one shared network, one head per task), :mod:`masks` (masked layers, bit packing,
thresholders), :mod:`metrics` (accuracy matrix, forgetting, zero-forgetting probes, latency), :mod:`reporting`
(storage and latency summary), :mod:`training` (phase recipes, trainable tensors) and :mod:`controls` (separate
networks per task and plain fine-tuning, the papers' two controls). The task sequence comes from harness/tasks.py.
"""
