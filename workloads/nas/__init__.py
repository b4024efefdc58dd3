"""The search spaces of UNAS (Vahdat et al., CVPR'20, arXiv 1912.07651): the DARTS cell space and the ProxylessNAS
MobileNetV2-style space, each as a search supernet (driven by architecture weights) and a discrete evaluation network.

Modules: :mod:`workloads.nas.darts_ops` (cell operations), :mod:`workloads.nas.darts` (genotypes, cell supernet and
evaluation network), :mod:`workloads.nas.proxyless` (MBConv supernet and evaluation network) and
:mod:`workloads.nas.workloads` (the four workloads). The search method itself lives in ``compressors/``.
"""
