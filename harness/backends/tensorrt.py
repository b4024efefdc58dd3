"""TensorRT backend (optional extra ``compression-bench[tensorrt]``): ONNX -> engine with the TensorRT Python API.

The model is exported with the ONNX Runtime backend's exporter (dynamic batch axis), parsed with
``trt.OnnxParser`` and built with one optimisation profile (batch 1 .. ``max_batch``, optimum at 1). Precisions:
``fp32``; ``fp16`` (``BuilderFlag.FP16``); ``int8`` (``BuilderFlag.INT8`` with an entropy calibrator fed by real
example inputs when the network has no Q/DQ nodes of its own). Execution uses ``execute_async_v3`` on the current
torch CUDA stream with device-resident torch tensors; the TensorRT version, precision, engine bytes and build time
are recorded. CUDA graphs (trtexec's default since 11) are not used here: ``info["cuda_graph"]`` says so.
Where the module or a GPU is missing the backend reports :class:`BackendUnavailable` with the reason.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.backends.base import BACKENDS, Backend, BackendUnavailable, Runnable
from harness.backends.onnxruntime import export_onnx

PRECISIONS = ("fp32", "fp16", "int8")


def _trt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            f"the tensorrt Python module is not installed ({exc}); pip install 'compression-bench[tensorrt]'"
        ) from exc
    return tensorrt


def _calibrator(trt: Any, batches: list[tuple[torch.Tensor, ...]], cache: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over device-resident copies of ``batches`` (real samples, never zeros)."""

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.batches = [tuple(x.cuda().contiguous() for x in batch) for batch in batches]
            self.index = 0

        def get_batch_size(self) -> int:
            return int(self.batches[0][0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            batch = self.batches[self.index]
            self.index += 1
            return [int(x.data_ptr()) for x in batch]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


class TensorRTRunnable(Runnable):
    def __init__(self, engine: Any, trt: Any, info: dict[str, Any], batch_axes: list[int]) -> None:
        self.engine = engine
        self.context = engine.create_execution_context()
        self.trt = trt
        self.info = info
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.batch_axes = batch_axes

    def __call__(self, *inputs: Any) -> Any:
        context = self.context
        alive = [x.contiguous() for x in inputs]
        for name, tensor in zip(self.inputs, alive, strict=True):
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.outputs_names:
            shape = tuple(context.get_tensor_shape(name))
            dtype = torch.float16 if self.engine.get_tensor_dtype(name) == self.trt.DataType.HALF else torch.float32
            out = torch.empty(shape, dtype=dtype, device="cuda")
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return outputs[0]

    def synchronize(self) -> None:
        torch.cuda.synchronize()


@BACKENDS.register("tensorrt")
class TensorRTBackend(Backend):
    """TensorRT engine built from the ONNX export.

    Args:
        precision: 'fp32', 'fp16' or 'int8'.
        max_batch: largest batch of the optimisation profile.
        calibration_inputs: real input batches for INT8 calibration (the example inputs when None).
        work_dir: where the ONNX file and engine are written (a temporary folder when None).
        batch_axes: batch dimension of each input (0 for all when None).
    """

    name = "tensorrt"
    precision = "fp32"

    def __init__(
        self,
        precision: str | None = None,
        max_batch: int = 256,
        work_dir: Path | None = None,
        batch_axes: list[int] | None = None,
        calibration_inputs: list[tuple[Any, ...]] | None = None,
        **_: Any,
    ) -> None:
        self.precision = precision or type(self).precision
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unknown TensorRT precision {self.precision!r}; choose one of {PRECISIONS}")
        self.max_batch = max_batch
        self.work_dir = work_dir
        self.batch_axes = batch_axes
        self.calibration_inputs = calibration_inputs

    def check_available(self, device: str) -> None:
        trt = _trt()
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise BackendUnavailable(f"TensorRT {trt.__version__} needs a CUDA GPU; this run's device is {device!r}")

    def _shape(self, tensor: torch.Tensor, axis: int, batch: int) -> tuple[int, ...]:
        shape = list(tensor.shape)
        shape[axis] = batch
        return tuple(shape)

    def _config(self, trt: Any, builder: Any, network: Any, inputs: tuple[Any, ...], axes: list[int]) -> Any:
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        for i, (tensor, axis) in enumerate(zip(inputs, axes, strict=True)):
            name = network.get_input(i).name
            profile.set_shape(
                name,
                self._shape(tensor, axis, 1),
                self._shape(tensor, axis, 1),
                self._shape(tensor, axis, self.max_batch),
            )
        config.add_optimization_profile(profile)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
            batches = self.calibration_inputs or [inputs]
            config.int8_calibrator = _calibrator(trt, batches, Path(tempfile.mkdtemp()) / "calibration.cache")
            config.set_calibration_profile(profile)
        return config

    def prepare(self, model: nn.Module, example_inputs: tuple[Any, ...], device: str) -> Runnable:
        trt = _trt()
        workdir = Path(self.work_dir or tempfile.mkdtemp(prefix="trt-"))
        workdir.mkdir(parents=True, exist_ok=True)
        axes = self.batch_axes or [0] * len(example_inputs)
        cpu_inputs = tuple(x.cpu() for x in example_inputs)
        export = export_onnx(model.cpu(), cpu_inputs, workdir / "model.onnx", axes)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(workdir / "model.onnx")):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX export: {errors}")
        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, self._config(trt, builder, network, cpu_inputs, axes))
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build a {self.precision} engine")
        build_s = time.perf_counter() - start
        engine_path = workdir / f"model-{self.precision}.engine"
        engine_path.write_bytes(bytes(serialized))
        engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        info = {
            "backend": self.name,
            "tensorrt": trt.__version__,
            "precision": self.precision,
            "engine_bytes": engine_path.stat().st_size,
            "build_s": build_s,
            "max_batch": self.max_batch,
            "cuda_graph": False,
            "onnx_bytes": export["onnx_bytes"],
            "exporter": export["exporter"],
        }
        return TensorRTRunnable(engine, trt, info, axes)


@BACKENDS.register("tensorrt-fp16")
class TensorRTFP16Backend(TensorRTBackend):
    name = "tensorrt-fp16"
    precision = "fp16"


@BACKENDS.register("tensorrt-int8")
class TensorRTINT8Backend(TensorRTBackend):
    name = "tensorrt-int8"
    precision = "int8"
