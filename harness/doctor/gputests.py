"""Step 2, the GPU-marked tests: ``pytest -m gpu tests`` in a subprocess, its JUnit XML parsed into figures.

The tests themselves live beside the code they test (``tests/compressors/test_xnor_kernel.py``: the Triton XNOR
kernel bit-exact against the float ``±1`` matmul on odd shapes; ``tests/harness/test_gpu_paths.py``: CUDA-event
latency against host timing, the ONNX Runtime CUDA provider; ``tests/harness/test_energy.py``: the NVML counter and
the window / idle rules on the real device). Any failed or erroring test fails the step; skipped tests are listed
with their reasons.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.doctor.record import PROJECT_ROOT, StepContext, StepFailed, StepSkipped

TEST_PATHS = ("tests",)


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and per-test outcomes (``passed``/``failed``/``error``/``skipped``) of a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    tests = []
    for case in root.iter("testcase"):
        outcome, message = "passed", None
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or child.text or "").strip()[:2000]
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        tests.append({"test": name, "outcome": outcome, "seconds": float(case.get("time") or 0.0), "message": message})
    counts = {key: sum(t["outcome"] == key for t in tests) for key in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "tests": tests}


def run(ctx: StepContext) -> None:
    """Run the GPU tests; fail when any of them failed or none was collected."""
    if not (PROJECT_ROOT / "tests").is_dir():
        raise StepSkipped(f"no tests/ folder in {PROJECT_ROOT}: run the kit from a source checkout")
    junit = ctx.work_dir / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *TEST_PATHS]  # fmt: skip
    ctx.record("command", command)
    try:
        proc = subprocess.run(command, cwd=PROJECT_ROOT, timeout=max(ctx.remaining() - 2.0, 1.0))
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"pytest did not finish within the step's time limit ({exc.timeout:.0f} s)") from exc
    ctx.record("returncode", proc.returncode)
    if not junit.is_file():
        raise StepFailed(f"pytest exited with {proc.returncode} and wrote no JUnit XML (see the log)")
    results = parse_junit(junit)
    ctx.record("counts", results["counts"])
    ctx.record("tests", results["tests"])
    bad = [t["test"] for t in results["tests"] if t["outcome"] in ("failed", "error")]
    if bad:
        raise StepFailed(f"{len(bad)} GPU test(s) failed: {', '.join(bad)}")
    if not results["tests"]:
        raise StepFailed("no GPU-marked test was collected")
    if proc.returncode != 0:
        raise StepFailed(f"pytest exited with {proc.returncode} (see the log)")
