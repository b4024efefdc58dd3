"""One separate latency process (see ``harness/meters/processes.py``): load the pickled model and inputs, prepare the
backend, measure SingleStream latency, write the result as JSON.

    python -m harness.meters.latency_worker PAYLOAD BACKEND AXES_JSON SETTINGS_JSON DEVICE THREADS SAMPLES_PATH
        RESULT_PATH   (the payload's SHA-256, hex, on standard input)

The payload is a whole pickled model, so it can only be loaded with ``weights_only=False``. The worker therefore
loads nothing it did not get from its parent: the parent sends the SHA-256 of the payload it wrote over the pipe to
standard input (never on the command line or on disk), and the worker reads the file once, checks those bytes
against it and unpickles the checked bytes only. A payload replaced in between is refused before it is unpickled.
"""

from __future__ import annotations

import hmac
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

    loaded = load_verified(Path(payload), sys.stdin.readline().strip())
    fields = json.loads(settings_json)
    settings = MeasureSettings(**{**fields, "batch_sizes": tuple(fields["batch_sizes"])})
    pool = loaded["pool"]
    backend = make_backend(backend_name, json.loads(axes_json))
    backend.check_available(device)
    runnable = backend.prepare(loaded["model"].to(device).eval(), pool[0], device)
    result = measure_latency(runnable, pool, settings, device, samples_path=Path(samples_path))
    atomic_write_text(result_path, dumps(result))
    return 0


def load_verified(payload: Path, expected_sha256: str) -> dict:
    """The payload's objects, after its bytes matched the digest the parent sent (see the module docstring)."""
    import hashlib
    import io

    data = payload.read_bytes()
    if not expected_sha256 or not hmac.compare_digest(hashlib.sha256(data).hexdigest(), expected_sha256):
        raise RuntimeError(f"refusing payload {payload}: it is not the file this process's parent wrote")
    return torch.load(io.BytesIO(data), weights_only=False)  # verified: the parent's own pickle


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
