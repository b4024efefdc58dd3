"""ONNX Runtime backend: export with ``torch.onnx.export``, run through IOBinding (METHODOLOGY §1).

Exporter choice: on torch 2.14.1 both exporters handle ResNet, an embedding + LSTM language model and BERT with a
dynamic batch axis and agree with eager to ~1e-6; the TorchScript ("legacy", ``dynamo=False``) exporter does it in
1-3 s on a 2-core CPU where the dynamo exporter needs ~27 s, so ``legacy`` is the default and ``dynamo`` the
fallback (and a choice). The exporter used, the opset, the providers actually given to the session, the graph
optimisation level and the ONNX file size (plus external data) are recorded in ``info``.

Inputs are bound with IOBinding directly from the torch tensors' memory (device-resident on CUDA, no host copy in
the timed call); outputs are allocated by ONNX Runtime on the same device and read back only for agreement checks.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.backends.base import BACKENDS, Backend, BackendUnavailable, Runnable

OPSET = 17
EXPORTERS = ("legacy", "dynamo")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from exc
    return onnxruntime


def _export_once(model: nn.Module, inputs: tuple[Any, ...], path: Path, batch_axes: list[int], exporter: str) -> None:
    names = [f"input_{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            shapes = tuple({axis: torch.export.Dim.DYNAMIC} for axis in batch_axes)
            torch.onnx.export(
                model,
                inputs,
                str(path),
                input_names=names,
                output_names=["output_0"],
                dynamic_shapes=shapes,
                dynamo=True,
                opset_version=max(OPSET, 18),
                verbose=False,
            )
        else:
            axes = {name: {axis: "batch"} for name, axis in zip(names, batch_axes, strict=True)}
            axes["output_0"] = {batch_axes[0]: "batch"}
            torch.onnx.export(
                model,
                inputs,
                str(path),
                input_names=names,
                output_names=["output_0"],
                dynamic_axes=axes,
                dynamo=False,
                opset_version=OPSET,
            )


def export_onnx(
    model: nn.Module, inputs: tuple[Any, ...], path: Path, batch_axes: list[int] | None = None, exporter: str = "legacy"
) -> dict[str, Any]:
    """Export ``model`` to ``path`` with a dynamic batch axis per input; falls back to the other exporter on failure.

    Returns what was done: exporter, opset, seconds, file bytes (ONNX file plus external data files beside it).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"Unknown exporter {exporter!r}; choose one of {EXPORTERS}")
    batch_axes = batch_axes or [0] * len(inputs)
    model = model.eval()
    errors = []
    for name in (exporter, *[e for e in EXPORTERS if e != exporter]):
        start = time.perf_counter()
        try:
            with torch.no_grad():
                _export_once(model, inputs, path, batch_axes, name)
        except Exception as exc:  # noqa: BLE001 - an exporter failure is recorded, then the other one is tried
            errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        files = [p for p in path.parent.iterdir() if p.is_file()]
        return {
            "exporter": name,
            "opset": OPSET if name == "legacy" else max(OPSET, 18),
            "export_s": time.perf_counter() - start,
            "onnx_bytes": sum(p.stat().st_size for p in files),
            "fallback_errors": errors,
        }
    raise BackendUnavailable("ONNX export failed with every exporter: " + " | ".join(errors))


_NUMPY_TYPES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.bool: "bool",
    torch.uint8: "uint8",
    torch.int8: "int8",
    torch.float64: "float64",
}


class OnnxRuntimeRunnable(Runnable):
    """An ``InferenceSession`` run with IOBinding; ``__call__`` returns ONNX Runtime's output OrtValues."""

    def __init__(self, session: Any, device: str, info: dict[str, Any], workdir: Path | None) -> None:
        import numpy as np

        self.session = session
        self.device = device
        self.info = info
        self._np = np
        self.binding = session.io_binding()
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.ort_device = "cuda" if device.startswith("cuda") else "cpu"
        self.device_id = torch.device(device).index or 0 if self.ort_device == "cuda" else 0
        if workdir is not None:
            weakref.finalize(self, shutil.rmtree, workdir, True)

    def __call__(self, *inputs: Any) -> Any:
        binding = self.binding
        alive = [tensor.contiguous() for tensor in inputs]  # bound memory must outlive the run
        for name, tensor in zip(self.input_names, alive, strict=True):
            binding.bind_input(
                name,
                self.ort_device,
                self.device_id,
                self._np.dtype(_NUMPY_TYPES[tensor.dtype]),
                list(tensor.shape),
                tensor.data_ptr(),
            )
        for name in self.output_names:
            binding.bind_output(name, self.ort_device, self.device_id)
        if self.ort_device == "cuda":
            binding.synchronize_inputs()
        self.session.run_with_iobinding(binding)
        if self.ort_device == "cuda":
            binding.synchronize_outputs()
        return binding.get_outputs()

    def outputs(self, *inputs: Any) -> torch.Tensor:
        values = self(*inputs)
        return torch.from_numpy(values[0].numpy()).float()

    def synchronize(self) -> None:
        if self.ort_device == "cuda":
            torch.cuda.synchronize()


@BACKENDS.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with the CUDA provider on ``cuda`` devices and the CPU provider otherwise.

    Args:
        work_dir: where the ONNX file is written (a temporary folder, removed with the runnable, when None).
        batch_axes: the batch dimension of each input (0 for all when None).
        exporter: 'legacy' (default) or 'dynamo'; the other one is tried if it fails.
        optimization_level: an ``onnxruntime.GraphOptimizationLevel`` member name.
        threads: intra-op threads (default: torch's thread count, so eager and ONNX Runtime use the same cores).
        spinning: intra-op threads spin-wait for work after a call (ONNX Runtime's default). Switched off for the
            interleaved comparison (:meth:`share_machine`): with it on, three sessions timed in turn called two
            identical models different in 2 of 6 trials (ratios up to 1.22) on a 2-core CPU.
    """

    name = "onnxruntime"

    def __init__(
        self,
        work_dir: Path | None = None,
        batch_axes: list[int] | None = None,
        exporter: str = "legacy",
        optimization_level: str = "ORT_ENABLE_ALL",
        threads: int | None = None,
        spinning: bool = True,
    ) -> None:
        self.work_dir = work_dir
        self.batch_axes = batch_axes
        self.exporter = exporter
        self.optimization_level = optimization_level
        self.threads = threads
        self.spinning = spinning

    def share_machine(self) -> None:
        self.spinning = False

    def providers(self, device: str) -> list[str]:
        if device.startswith("cuda"):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def check_available(self, device: str) -> None:
        ort = _ort()
        wanted = self.providers(device)[0]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} has no {wanted} (available: {ort.get_available_providers()}); "
                f"install onnxruntime-gpu for CUDA"
            )

    def prepare(self, model: nn.Module, example_inputs: tuple[Any, ...], device: str) -> Runnable:
        ort = _ort()
        workdir = Path(tempfile.mkdtemp(prefix="onnx-")) if self.work_dir is None else Path(self.work_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "model.onnx"
        cpu_inputs = tuple(x.cpu() if torch.is_tensor(x) else x for x in example_inputs)
        export = export_onnx(model.cpu(), cpu_inputs, path, self.batch_axes, self.exporter)
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, self.optimization_level)
        options.intra_op_num_threads = self.threads or torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers(device))
        info = {
            "backend": self.name,
            "onnxruntime": ort.__version__,
            "providers": session.get_providers(),
            "graph_optimization_level": self.optimization_level,
            "intra_op_num_threads": options.intra_op_num_threads,
            "intra_op_spinning": self.spinning,
            "io_binding": True,
            "onnx_path": str(path) if self.work_dir is not None else None,
            **export,
        }
        return OnnxRuntimeRunnable(session, device, info, workdir if self.work_dir is None else None)
