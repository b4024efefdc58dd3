"""``python -m harness doctor``: one prepared command that checks every CUDA path of the suite on the GPU at hand.

It runs, in order and within a total time budget it enforces (default 8 minutes), the steps of :mod:`.plan`:
the environment (GPU, driver, CUDA, clocks, NVML support, versions), the GPU-marked tests (``pytest -m gpu``), one
real ``--device cuda`` run through :func:`harness.runner.execute` (eager and torch.compile), the latency meter's
overhead, and the claims only a GPU can test (packed XNOR GEMM vs cuBLAS, the QNN MLP's executed binary model vs its
fp32 twin, NVML energy of dense vs thinned ResNet-50, thinned vs dense ResNet-50 speedup against the ideal).

Every step runs in its own subprocess (:mod:`.worker`) with its own time limit, so a hang or a crash (a CUDA
illegal-address error kills the CUDA context of its process) costs that step only; the step's partial figures are
kept and ``summary.json`` is rewritten atomically after every step, with pass/fail against the targets of
:mod:`.targets`. Without a GPU the same command runs the CPU-possible parts (CPU versions of the kernel and meter
checks) and reports every GPU step as skipped with the reason.

The package imports nothing heavy at module level: torch is imported inside the steps, in their subprocesses.
"""
