"""``--help``, ``--version`` and ``ls`` answer without importing torch; the ``ls`` catalog matches the registries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

NO_TORCH = "import sys; from harness.cli import main; code = main({argv!r}); print('torch' in sys.modules)"


@pytest.mark.parametrize(
    "argv", [["ls", "workloads"], ["ls", "compressors"], ["ls", "datasets", "--pattern", "cifar*"], ["ls", "runs"]]
)
def test_listing_imports_no_torch(argv, tmp_path):
    if argv[1] == "runs":
        argv = [*argv, "--results", str(tmp_path)]
    out = subprocess.run([sys.executable, "-c", NO_TORCH.format(argv=argv)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_torch(flag):
    code = f"import sys\ntry:\n    from harness.cli import main; main([{flag!r}])\nexcept SystemExit:\n    pass\n"
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
    if flag == "--version":
        assert out.stdout.startswith("python -m harness 0.")


def test_catalog_matches_the_live_registries():
    from harness.cli.catalog import CATALOG, CATALOGUED
    from harness.cli.ls import LISTERS

    stored = json.loads(CATALOG.read_text())
    for what in CATALOGUED:
        live = [list(r) for r in LISTERS[what](None)]
        assert stored[what] == live, f"ls catalog is stale for {what}: run python -m harness ls --refresh-catalog"
