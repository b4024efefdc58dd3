"""The packed XNOR-popcount kernels: packing round trips, bit-exact GEMM on odd shapes, conv == float conv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compressors.kernels import binary_ops, xnor_cpu, xnor_reference, xnor_triton
from compressors.qnn_layers import fixed_point_codes, fixed_point_gemm

ODD_SHAPES = [(1, 1, 1), (3, 63, 5), (5, 64, 4), (7, 65, 9), (9, 130, 17), (33, 1000, 65), (4, 4096, 8)]


def pm1(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def test_pack_sets_bit_for_non_negative_including_zero() -> None:
    x = torch.tensor([[0.0, -0.0, -1.0, 2.0] + [-1.0] * 60 + [0.5]])
    words = binary_ops.pack_signs(x)
    assert words.shape == (1, 2)
    assert int(words[0, 0]) == 0b1011  # bits 0, 1 (0.0 and -0.0 >= 0) and 3
    assert int(words[0, 1]) == 1  # element 64; pad bits stay 0


@pytest.mark.parametrize("rows,k", [(1, 1), (3, 63), (4, 64), (5, 65), (2, 200)])
def test_packing_round_trips_and_matches_reference(rows: int, k: int) -> None:
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(k))
    packed = binary_ops.pack_signs(x)
    assert torch.equal(packed, xnor_reference.pack_signs(x))
    assert torch.equal(xnor_reference.unpack_signs(packed, k), pm1(x))


@pytest.mark.parametrize("m,k,n", ODD_SHAPES)
def test_cpu_kernel_bit_exact_on_every_isa(m: int, k: int, n: int) -> None:
    gen = torch.Generator().manual_seed(m * k + n)
    a, b = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    expected = pm1(a) @ pm1(b).T  # integers: exact in float32
    pa, pb = xnor_cpu.pack_signs(a), xnor_cpu.pack_signs(b)
    for isa in xnor_cpu.available_isas():
        assert torch.equal(xnor_cpu.xnor_gemm(pa, pb, k, isa), expected), isa
    assert torch.equal(xnor_reference.xnor_gemm(pa, pb, k), expected)
    assert torch.equal(binary_ops.xnor_gemm(pa, pb, k), expected)


def test_multithreaded_large_product_is_exact() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(130, 700, generator=gen), torch.randn(150, 700, generator=gen)  # > 2^20 word pairs: parallel
    got = binary_ops.xnor_gemm(binary_ops.pack_signs(a), binary_ops.pack_signs(b), 700)
    assert torch.equal(got, pm1(a) @ pm1(b).T)


def test_binary_linear_on_3d_input() -> None:
    gen = torch.Generator().manual_seed(2)
    x, w = torch.randn(2, 3, 70, generator=gen), torch.randn(6, 70, generator=gen)
    got = binary_ops.binary_linear(x, binary_ops.pack_signs(pm1(w)), 70)
    assert torch.equal(got, pm1(x) @ pm1(w).T)


@pytest.mark.parametrize(
    "shape,kernel,stride,padding,dilation",
    [((2, 3, 7, 9), (3, 3), (1, 1), (1, 1), (1, 1)), ((1, 5, 8, 8), (3, 2), (2, 1), (2, 0), (1, 2)),
     ((3, 16, 6, 6), (1, 1), (1, 1), (0, 0), (1, 1)), ((1, 8, 9, 7), (5, 5), (2, 2), (2, 2), (1, 1))],
)  # fmt: skip
def test_conv_via_kernel_equals_float_conv(shape, kernel, stride, padding, dilation) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=gen)
    w = pm1(torch.randn(4, shape[1], *kernel, generator=gen))
    expected = F.conv2d(pm1(x), w, stride=stride, padding=padding, dilation=dilation)  # zero padding
    correction = binary_ops.padding_correction(w, shape[-2:], stride, padding, dilation) if any(padding) else None
    got = binary_ops.binary_conv2d(x, binary_ops.pack_signs(w.flatten(1)), tuple(w.shape), stride, padding, dilation,
                                   correction)  # fmt: skip
    assert torch.equal(got, expected)


def test_fixed_point_first_layer_gemm_equals_float() -> None:
    gen = torch.Generator().manual_seed(4)
    x, w = torch.randn(5, 100, generator=gen) * 2, pm1(torch.randn(7, 100, generator=gen))
    x_q = fixed_point_codes(x, 8, 5) * 2.0**-5
    got = fixed_point_gemm(x, binary_ops.pack_signs(w), w.sum(dim=1), 8, 5)
    assert torch.equal(got, x_q @ w.T)
    assert fixed_point_codes(torch.tensor([100.0, -100.0, 0.015625]), 8, 5).tolist() == [127.0, -128.0, 1.0]


def test_flop_formula_counts_dense_equivalent() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    a, b = binary_ops.pack_signs(torch.randn(3, 100)), binary_ops.pack_signs(torch.randn(5, 100))
    with FlopCounterMode(display=False) as counter:
        binary_ops.xnor_gemm(a, b, 100)
        binary_ops.xnor_gemm(a, b, 100, 3)  # three bit planes of one row
    assert counter.get_total_flops() == 2 * 3 * 5 * 100 + 2 * 1 * 5 * 100


def test_missing_compiler_raises_clear_error_and_ops_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(xnor_cpu.shutil, "which", lambda name: None)
    xnor_cpu.load.cache_clear()
    try:
        with pytest.raises(xnor_cpu.KernelUnavailable, match="no C compiler"):
            xnor_cpu.load()
        a, b = torch.randn(4, 70), torch.randn(3, 70)
        with pytest.warns(RuntimeWarning, match="no C compiler"):
            binary_ops._warned.discard("cpu")
            got = binary_ops.xnor_gemm(binary_ops.pack_signs(a), binary_ops.pack_signs(b), 70)
        assert torch.equal(got, pm1(a) @ pm1(b).T)
        assert binary_ops.backend_name("cpu").startswith("torch-reference")
    finally:
        xnor_cpu.load.cache_clear()
        binary_ops._warned.discard("cpu")


def test_unwritable_cache_dir_raises_kernel_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("QNN_KERNEL_CACHE", str(blocker))
    xnor_cpu.load.cache_clear()
    try:
        with pytest.raises(xnor_cpu.KernelUnavailable, match="QNN_KERNEL_CACHE"):
            xnor_cpu.load()
    finally:
        xnor_cpu.load.cache_clear()


def test_triton_module_reports_availability() -> None:
    ok, reason = xnor_triton.available()
    assert ok == (xnor_triton.HAVE_TRITON and torch.cuda.is_available())
    assert reason


@pytest.mark.gpu
def test_triton_kernel_bit_exact_on_gpu() -> None:
    if not xnor_triton.available()[0]:
        pytest.skip(f"Triton XNOR kernel cannot run here: {xnor_triton.available()[1]}")
    for m, k, n in ODD_SHAPES:
        a, b = torch.randn(m, k, device="cuda"), torch.randn(n, k, device="cuda")
        got = xnor_triton.xnor_gemm(binary_ops.pack_signs(a), binary_ops.pack_signs(b), k)
        assert torch.equal(got, pm1(a) @ pm1(b).T)


@pytest.mark.gpu
def test_binary_ops_route_cuda_tensors_to_triton_bit_exact() -> None:
    """The route the binary layers take on CUDA: packing on the GPU equals CPU packing; the GEMM is Triton's and
    equals the float ±1 product computed on the CPU (exact integers), on shapes spanning several word blocks."""
    if not xnor_triton.available()[0]:
        pytest.skip(f"Triton XNOR kernel cannot run here: {xnor_triton.available()[1]}")
    assert binary_ops.backend_name("cuda") == "triton"
    for m, k, n in [(257, 1000, 129), (64, 4097, 33), (2, 64 * 9, 3)]:
        gen = torch.Generator().manual_seed(m + k + n)
        a, b = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
        pa, pb = binary_ops.pack_signs(a.cuda()), binary_ops.pack_signs(b.cuda())
        assert torch.equal(pa.cpu(), xnor_reference.pack_signs(a))
        assert torch.equal(pb.cpu(), xnor_reference.pack_signs(b))
        got = binary_ops.xnor_gemm(pa, pb, k)
        assert got.is_cuda and got.dtype == torch.float32
        assert torch.equal(got.cpu(), pm1(a) @ pm1(b).T), (m, k, n)


@pytest.mark.gpu
def test_binary_conv_on_gpu_equals_float_conv() -> None:
    if not xnor_triton.available()[0]:
        pytest.skip(f"Triton XNOR kernel cannot run here: {xnor_triton.available()[1]}")
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 16, 9, 7, generator=gen)
    w = pm1(torch.randn(8, 16, 3, 3, generator=gen))
    expected = F.conv2d(pm1(x), w, padding=1)  # CPU float: exact integers
    wc = w.cuda()
    correction = binary_ops.padding_correction(wc, (9, 7), (1, 1), (1, 1), (1, 1))
    got = binary_ops.binary_conv2d(x.cuda(), binary_ops.pack_signs(wc.flatten(1)), tuple(w.shape), (1, 1), (1, 1),
                                   (1, 1), correction)  # fmt: skip
    assert torch.equal(got.cpu(), expected)
