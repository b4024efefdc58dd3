"""One separate latency process (see ``harness/meters/processes.py``): load the pickled model and inputs, prepare the
backend, measure SingleStream latency, write the result as JSON.

    python -m harness.meters.latency_worker PAYLOAD BACKEND AXES_JSON SETTINGS_JSON DEVICE THREADS SAMPLES_PATH
        RESULT_PATH
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from harness.meters.latency import MeasureSettings, measure_latency
from harness.store import atomic_write_text, dumps


def main(argv: list[str]) -> int:
    payload, backend_name, axes_json, settings_json, device, threads, samples_path, result_path = argv
    torch.set_num_threads(int(threads))
    from harness.measure import make_backend

    loaded = torch.load(payload, weights_only=False)
    fields = json.loads(settings_json)
    settings = MeasureSettings(**{**fields, "batch_sizes": tuple(fields["batch_sizes"])})
    pool = loaded["pool"]
    backend = make_backend(backend_name, json.loads(axes_json))
    backend.check_available(device)
    runnable = backend.prepare(loaded["model"].to(device).eval(), pool[0], device)
    result = measure_latency(runnable, pool, settings, device, samples_path=Path(samples_path))
    atomic_write_text(result_path, dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
