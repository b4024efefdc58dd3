#!/usr/bin/env bash
# The GPU verification kit on a machine without network: installs the missing pure-Python dependencies from the
# wheels carried in .whl/ (see scripts/gpu_wheels.sh) into a private folder, then runs, from the source tree,
#   python3 -m harness doctor --device cuda --out OUT_DIR
# and removes the large caches (compiled kernels, inductor cache, built models, checkpoints) from OUT_DIR afterwards.
#
# Usage: scripts/gpu_check.sh [OUT_DIR]      OUT_DIR defaults to $OUT.
# Environment: PYTHON (default python3), DOCTOR_BUDGET_S (default 480), DOCTOR_SITE (default /tmp/site),
#              DOCTOR_ARGS (extra arguments, e.g. "--only thinned_speedup"), KEEP_CACHE=1 (keep OUT_DIR/cache).
# Exit status: the doctor's (1 when a step failed or timed out); the figures are in OUT_DIR/summary.json.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${1:-${OUT:-}}"
if [ -z "$OUT_DIR" ]; then
    echo "usage: scripts/gpu_check.sh OUT_DIR   (or set OUT)" >&2
    exit 2
fi
PY="${PYTHON:-python3}"
SITE="${DOCTOR_SITE:-/tmp/site}"
mkdir -p "$OUT_DIR/logs"

# Install only the wheels whose distribution is missing here (never shadow what the machine has).
missing=()
for whl in .whl/*.whl; do
    [ -e "$whl" ] || continue
    dist=$(basename "$whl" | cut -d- -f1)
    if ! "$PY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null; then
        missing+=("$whl")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} into $SITE"
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${missing[@]}" \
            >"$OUT_DIR/logs/wheels.log" 2>&1; then
        echo "pip failed (see $OUT_DIR/logs/wheels.log); unpacking the wheels instead (they are pure Python)"
        "$PY" - "$SITE" "${missing[@]}" <<'PYEOF' || exit 3
import sys, zipfile
site, wheels = sys.argv[1], sys.argv[2:]
for wheel in wheels:
    zipfile.ZipFile(wheel).extractall(site)
PYEOF
    fi
fi

export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

# shellcheck disable=SC2086 # DOCTOR_ARGS is a list of words
"$PY" -m harness doctor --device cuda --out "$OUT_DIR" --budget-s "${DOCTOR_BUDGET_S:-480}" ${DOCTOR_ARGS:-} \
    2>&1 | tee "$OUT_DIR/logs/doctor.log"
status=${PIPESTATUS[0]}

if [ "${KEEP_CACHE:-0}" != "1" ]; then
    rm -rf "$OUT_DIR/cache"
    find "$OUT_DIR" \( -name '*.pt' -o -name '*.ckpt' \) -type f -delete 2>/dev/null
fi
echo "gpu_check: doctor exited with $status; summary in $OUT_DIR/summary.json"
exit "$status"
