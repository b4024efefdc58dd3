"""Backends: registry entries, ONNX Runtime export/IOBinding agreement, torch.compile recompile guard, TensorRT
reporting unavailable with its reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.backends import BACKENDS, BackendUnavailable


class TinyCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


class TinyLm(nn.Module):
    """Sequence-first LSTM language model: the batch is axis 1."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.lstm, self.out = nn.Embedding(20, 8), nn.LSTM(8, 16), nn.Linear(16, 20)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(self.embed(tokens))[0])


def test_registry_has_every_backend_lazily() -> None:
    assert {"eager", "compile", "onnxruntime", "tensorrt", "tensorrt-fp16", "tensorrt-int8"} <= set(BACKENDS.names())


def test_onnxruntime_agrees_with_eager_on_a_dynamic_batch() -> None:
    torch.manual_seed(0)
    model = TinyCnn().eval()
    backend = BACKENDS.get("onnxruntime")()
    backend.check_available("cpu")
    runnable = backend.prepare(model, (torch.randn(1, 3, 8, 8),), "cpu")
    for batch in (1, 3):
        x = torch.randn(batch, 3, 8, 8)
        with torch.no_grad():
            expected = model(x)
        assert torch.allclose(runnable.outputs(x), expected, atol=1e-5)
    info = runnable.info
    assert info["providers"] == ["CPUExecutionProvider"] and info["io_binding"] is True
    assert info["graph_optimization_level"] == "ORT_ENABLE_ALL" and info["exporter"] == "legacy"
    assert info["onnx_bytes"] > 4 * (4 * 3 * 9 + 256 * 5)  # at least the fp32 weights


def test_onnxruntime_batch_axis_of_sequence_first_lstm() -> None:
    torch.manual_seed(0)
    model = TinyLm().eval()
    runnable = BACKENDS.get("onnxruntime")(batch_axes=[1]).prepare(model, (torch.randint(0, 20, (6, 1)),), "cpu")
    tokens = torch.randint(0, 20, (6, 4))
    with torch.no_grad():
        expected = model(tokens)
    got = runnable.outputs(tokens)
    assert got.shape == (6, 4, 20) and torch.allclose(got, expected, atol=1e-5)


def test_onnxruntime_cuda_needs_the_cuda_provider() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        BACKENDS.get("onnxruntime")().check_available("cuda")


@pytest.mark.parametrize("name", ["tensorrt", "tensorrt-fp16", "tensorrt-int8"])
def test_tensorrt_reports_why_it_is_unavailable(name: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; TensorRT may really run here")
    with pytest.raises(BackendUnavailable, match="tensorrt|CUDA GPU"):
        BACKENDS.get(name)().check_available("cpu")


def test_compile_records_compile_time_and_refuses_recompiles_when_timed() -> None:
    from harness.backends.compile import CompileBackend, RecompileInTimedRegion

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    runnable = CompileBackend(backend="eager").prepare(model, (torch.randn(1, 4),), "cpu")  # dynamo only: fast
    assert runnable.info["compile_time_s"] > 0 and runnable.info["compiler_backend"] == "eager"
    with runnable.timed_region():
        out = runnable(torch.randn(1, 4))
    assert out.shape == (1, 3)
    runnable(torch.randn(2, 4))  # a new shape during warm-up recompiles, outside the timed region
    with pytest.raises(RecompileInTimedRegion), runnable.timed_region():
        runnable(torch.randn(5, 2, 4))
