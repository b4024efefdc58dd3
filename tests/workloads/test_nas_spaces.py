"""UNAS search spaces (workloads/nas): parameter counts vs published figures, genotypes, supernet weight interface
(one-hot samples reproduce the discrete cells/networks), drop-path, and a one-epoch tiny train of each workload."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.train import Trainer
from workloads.nas.darts import (
    GENOTYPE_SOURCES,
    GENOTYPES,
    DartsEvalNetwork,
    DartsImageNetNetwork,
    DartsSearchNetwork,
    EvalCell,
    Genotype,
    MixedOp,
    SearchCell,
    count_params,
    drop_path,
    edge_offset,
    num_edges,
    paired_input_edge_weights,
    uniform_edge_weights,
)
from workloads.nas.darts_ops import DARTS_PRIMITIVES, UNAS_PRIMITIVES, make_op
from workloads.nas.proxyless import (
    ARCHITECTURES,
    BLOCK_PRIMITIVES,
    REDUCTION_PRIMITIVES,
    ZERO,
    ProxylessEvalNetwork,
    ProxylessSearchNetwork,
    parse_architecture,
)
from workloads.nas.workloads import (
    DartsEvalWorkload,
    DartsSearchWorkload,
    ProxylessEvalWorkload,
    ProxylessSearchWorkload,
)

WORKLOADS = (DartsSearchWorkload, DartsEvalWorkload, ProxylessSearchWorkload, ProxylessEvalWorkload)


# ---- parameter counts against the published figures ---------------------------------------------------------------
def test_darts_v2_cifar10_has_the_published_3_3m_parameters() -> None:
    model = DartsEvalNetwork(GENOTYPES["DARTS_V2"], 10, init_channels=36, layers=20, auxiliary=True)
    params = count_params(model)  # the auxiliary head is excluded, as DARTS' and UNAS' count_parameters_in_M do
    assert params == 3_349_342  # DARTS' train.py logs "param size = 3.349342MB"
    assert params == pytest.approx(3.3e6, rel=0.02)  # quark0/darts README: "3.3M model params"; DARTS Table 1
    assert sum(p.numel() for p in model.parameters()) > params  # the head exists and is only left out of the count


def test_unas_cells_and_imagenet_network_parameter_counts() -> None:
    unas = count_params(DartsEvalNetwork(GENOTYPES["UNAS_CIFAR10"], 10, auxiliary=False))
    assert unas == 3_330_766
    # UNAS paper Table 2 reports about 3.3 M for its CIFAR-10 cell (PAPERS.md §8, to be re-checked against the paper)
    assert unas == pytest.approx(3.3e6, rel=0.02)
    imagenet = count_params(DartsImageNetNetwork(GENOTYPES["DARTS_V2"], 1000, auxiliary=True))
    assert imagenet == 4_718_752 and imagenet == pytest.approx(4.7e6, rel=0.02)  # quark0/darts README "4.7M"


def test_proxyless_gpu_matches_the_published_network() -> None:
    model = ProxylessEvalNetwork("PROXYLESS_GPU", 1000, widths="unas")
    params = sum(p.numel() for p in model.parameters())
    assert params == 7_119_848  # mit-han-lab/proxylessnas logs/imagenet_gpu_log.txt: "Total training params: 7.12M"
    assert sum(p.numel() for p in ProxylessEvalNetwork("UNAS", 1000).parameters()) == 5_965_528


# ---- genotypes and op lists ----------------------------------------------------------------------------------------
def test_genotype_registry_and_unas_conversion() -> None:
    assert {"DARTS_V2", "UNAS_CIFAR10", "UNAS_CIFAR100", "UNAS_IMAGENET"} <= set(GENOTYPES)
    published = {k: v for k, v in GENOTYPE_SOURCES.items() if not k.startswith("UNAS_FOUND_")}  # found in-process
    assert set(GENOTYPES) == set(GENOTYPE_SOURCES) and all("genotypes.py" in s for s in published.values())
    g = GENOTYPES["UNAS_CIFAR10"]  # node 0: inputs [0, 0], ops [4, 0]; reduce node 3: inputs [3, 1], ops [4, 5]
    assert g.normal[:2] == (("sep_conv_5x5", 0), ("skip_connect", 0))
    assert g.reduce[6:] == (("sep_conv_5x5", 3), ("avg_pool_3x3", 1))
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    assert GENOTYPES["UNAS_CIFAR100"].reduce[0] == ("sep_conv_7x7", 0)
    assert GENOTYPES["DARTS_V2"].normal[-1] == ("dil_conv_3x3", 2)
    assert len(UNAS_PRIMITIVES) == 7 and "none" not in UNAS_PRIMITIVES and "sep_conv_7x7" in UNAS_PRIMITIVES
    assert len(DARTS_PRIMITIVES) == 8 and "none" in DARTS_PRIMITIVES
    with pytest.raises(ValueError, match="cannot read state"):
        Genotype((("skip_connect", 2), ("skip_connect", 0)), (2,), (("skip_connect", 0),) * 2, (2,))
    with pytest.raises(ValueError, match="Registered"):
        DartsEvalWorkload(options={"genotype": "DARTS_V3"})


# ---- supernet weight interface -------------------------------------------------------------------------------------
def _one_hot_paired(genotype: Genotype, reduction: bool, primitives: tuple[str, ...]) -> torch.Tensor:
    pairs = genotype.reduce if reduction else genotype.normal
    inputs, ops = [], []
    for node in range(len(pairs) // 2):
        inp, op = torch.zeros(2, node + 2), torch.zeros(2, len(primitives))
        for slot in range(2):
            name, index = pairs[2 * node + slot]
            inp[slot, index] = 1.0
            op[slot, primitives.index(name)] = 1.0
        inputs.append(inp)
        ops.append(op)
    return paired_input_edge_weights(inputs, ops)


def _copy_search_to_eval(search: SearchCell, cell: EvalCell, genotype: Genotype, primitives: tuple[str, ...]) -> None:
    cell.preprocess0.load_state_dict(search.preprocess0.state_dict(), strict=False)
    cell.preprocess1.load_state_dict(search.preprocess1.state_dict(), strict=False)
    pairs = genotype.reduce if cell.reduction else genotype.normal
    for slot, (name, index) in enumerate(pairs):
        source = search.edges[edge_offset(slot // 2) + index].ops[primitives.index(name)]
        cell.ops[slot].load_state_dict(source.state_dict(), strict=False)


SAME_SLOT = Genotype.from_unas(  # both slots of node 0 take sep_conv_3x3 on input 1: weight 2 on one mixed op
    normal=[((1, 1), (1, 1)), ((0, 2), (3, 0)), ((3, 1), (2, 5)), ((4, 0), (6, 4))],
    reduce=[((1, 1), (1, 1)), ((0, 2), (3, 0)), ((3, 1), (2, 5)), ((4, 0), (6, 4))],
)


@pytest.mark.parametrize("name", ["UNAS_CIFAR10", "DARTS_V2", "same_slot"])
@pytest.mark.parametrize("reduction", [False, True])
def test_one_hot_paired_weights_reproduce_the_discrete_cell(name: str, reduction: bool) -> None:
    torch.manual_seed(0)
    genotype = SAME_SLOT if name == "same_slot" else GENOTYPES[name]
    search = SearchCell(4, 12, 12, 8, reduction, False, UNAS_PRIMITIVES)
    cell = EvalCell(genotype, 12, 12, 8, reduction, False)
    _copy_search_to_eval(search, cell, genotype, UNAS_PRIMITIVES)
    weights = _one_hot_paired(genotype, reduction, UNAS_PRIMITIVES)
    assert weights.shape == (num_edges(4), 7) and weights.sum() == 8  # 4 nodes x 2 slots
    s0, s1 = torch.randn(3, 12, 8, 8), torch.randn(3, 12, 8, 8)
    expected = cell(s0, s1, 0.0)  # training mode, BN on batch statistics in both
    assert torch.allclose(search(s0, s1, weights), expected, atol=1e-5)
    assert expected.shape == (3, 32, 4 if reduction else 8, 4 if reduction else 8)


def test_mixed_op_one_hot_and_relaxed_weights() -> None:
    torch.manual_seed(0)
    edge = MixedOp(6, 1, UNAS_PRIMITIVES).eval()
    x = torch.randn(2, 6, 5, 5)
    outputs = [op(x) for op in edge.ops]
    for k in range(7):
        assert torch.equal(edge(x, torch.eye(7)[k]), outputs[k])
    relaxed = torch.softmax(torch.randn(7), 0)
    assert torch.allclose(edge(x, relaxed), sum(w * y for w, y in zip(relaxed, outputs, strict=True)), atol=1e-6)
    single = make_op("dil_conv_3x3", 6, 1, affine=False)
    single.load_state_dict(edge.ops[3].state_dict())
    assert torch.equal(edge(x, torch.eye(7)[3]), single.eval()(x))


def test_search_network_shapes_per_example_weights_and_gates() -> None:
    torch.manual_seed(0)
    net = DartsSearchNetwork(10, init_channels=4, layers=5).eval()
    x = torch.randn(2, 3, 16, 16)
    assert net(x).shape == (2, 10) and (net.num_normal, net.num_reduce) == (3, 2)
    gumbel = torch.softmax((torch.randn(14, 7) - torch.log(-torch.log(torch.rand(14, 7)))) / 0.4, dim=-1)
    assert torch.isfinite(net(x, gumbel, gumbel)).all()
    onehot = torch.eye(7)[torch.randint(0, 7, (2, 14))]  # [batch, edges, ops]: one architecture per example
    batched = net(x, onehot, onehot.flip(0))
    for b in range(2):
        assert torch.allclose(batched[b], net(x[b : b + 1], onehot[b], onehot.flip(0)[b])[0], atol=1e-5)
    per_cell = [gumbel] * 3
    assert torch.allclose(net(x, per_cell, gumbel), net(x, gumbel, gumbel))
    gates = torch.ones(14)
    gates[edge_offset(3) :] = 0.0  # switch the last node's edges off: it becomes zero, the rest is unchanged
    gated = net(x, gumbel, gumbel, gates_normal=gates)
    masked = gumbel.clone()
    masked[edge_offset(3) :] = 0.0
    assert torch.allclose(gated, net(x, masked, gumbel)) and not torch.allclose(gated, net(x, gumbel, gumbel))
    with pytest.raises(ValueError, match="num_edges, num_ops"):
        net(x, torch.ones(14, 8))
    paired = uniform_edge_weights(4, 7)  # UNAS' expectation under uniform logits: each node has mass 2
    for node in range(4):
        assert paired[edge_offset(node) : edge_offset(node + 1)].sum().item() == pytest.approx(2.0)


def test_eval_network_shapes_auxiliary_and_drop_path_only_in_training() -> None:
    torch.manual_seed(0)
    net = DartsEvalNetwork(GENOTYPES["UNAS_CIFAR10"], 10, init_channels=8, layers=5, drop_path_prob=0.5)
    x = torch.randn(4, 3, 32, 32)
    net.train()
    logits, aux = net(x, return_aux=True)
    assert logits.shape == aux.shape == (4, 10)  # type: ignore[union-attr]
    net.eval()
    assert net(x, return_aux=True)[1] is None
    with torch.no_grad():
        reference = net(x)
        net.drop_path_prob = 0.0
        assert torch.equal(net(x), reference)  # no drop-path at inference
        net.train()
        clean = net(x)
        net.drop_path_prob = 0.5
        assert not torch.allclose(net(x), clean)  # drop-path acts in training
    branch = torch.ones(1000, 2, 1, 1)
    dropped = drop_path(branch, 0.25)
    kept = dropped[dropped != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1.0 / 0.75)) and 0.15 < (dropped == 0).float().mean() < 0.35


# ---- ProxylessNAS space ----------------------------------------------------------------------------------------------
def test_proxyless_eval_network_from_a_choice_list() -> None:
    ops = ARCHITECTURES["UNAS"]
    assert len(ops) == 21 and ops.count(ZERO) == 5
    model = ProxylessEvalNetwork(",".join(ops), 10, width_multiplier=0.25)
    assert len(model.blocks) == 21 - 5  # zero layers are skipped
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    short = ",".join(op.removeprefix("mic_") for op in ["mic_3x3_e6"] * 21)
    assert len(ProxylessEvalNetwork(short, 10, width_multiplier=0.25).blocks) == 21
    bad = list(ops)
    bad[0] = ZERO  # layer 1 changes width: zero is not a choice there
    with pytest.raises(ValueError, match="layer 1"):
        parse_architecture(bad)
    with pytest.raises(ValueError, match="Registered"):
        ProxylessEvalWorkload(options={"architecture": "UNAS_V2"})


def test_proxyless_one_hot_supernet_equals_the_eval_network() -> None:
    torch.manual_seed(0)
    supernet = ProxylessSearchNetwork(10, width_multiplier=0.25).eval()
    assert [len(c) for c in supernet.choices].count(len(REDUCTION_PRIMITIVES)) == 6
    assert [len(c) for c in supernet.choices].count(len(BLOCK_PRIMITIVES)) == 15
    arch = ARCHITECTURES["UNAS"]
    weights = [torch.eye(len(c))[c.index(op)] for c, op in zip(supernet.choices, arch, strict=True)]
    assert supernet.discretize(weights) == arch
    model = ProxylessEvalNetwork(arch, 10, width_multiplier=0.25).eval()
    model.load_state_dict(supernet.state_dict(), strict=False)  # stem and head share names
    chosen = [layer.ops[layer.choices.index(op)] for layer, op in zip(supernet.layers, arch, strict=True) if op != ZERO]
    for block, source in zip(model.blocks, chosen, strict=True):
        block.load_state_dict(source.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(supernet(x, weights), model(x), atol=1e-5)
        assert supernet(x).shape == (2, 10)  # uniform default weights
        batched = [w.expand(2, -1) for w in weights]
        assert torch.allclose(supernet(x, batched), model(x), atol=1e-5)


# ---- workloads -------------------------------------------------------------------------------------------------------
def test_defaults_are_the_paper_sizes_and_smaller_sizes_are_recorded() -> None:
    assert (DartsEvalWorkload.Options().layers, DartsEvalWorkload.Options().init_channels) == (20, 36)
    assert (DartsSearchWorkload.Options().layers, DartsSearchWorkload.Options().init_channels) == (8, 16)
    assert ProxylessEvalWorkload.Options().width_multiplier == 1.0
    for cls in WORKLOADS:
        assert cls.info.paper == "1912.07651" and all(r.source for r in cls.info.references)
        assert all(recipe.source for recipe in cls.recipes.values())
        tiny = cls(profile="tiny", options=cls.tiny_options).describe()
        assert "explicit option" in tiny["architecture"] and tiny["options"] | cls.tiny_options == tiny["options"]
        assert "paper size" in cls(profile="paper").describe()["architecture"]


def test_darts_eval_loss_adds_the_auxiliary_term() -> None:
    torch.manual_seed(0)
    workload = DartsEvalWorkload(options={"layers": 5, "init_channels": 8, "drop_path_prob": 0.0})
    model = workload.build_model().train()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    logits, aux = model(images, return_aux=True)
    expected = nn.functional.cross_entropy(logits, labels) + 0.4 * nn.functional.cross_entropy(aux, labels)
    assert workload.loss(model, (images, labels)).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("cls", WORKLOADS, ids=lambda c: c.info.name)
def test_one_tiny_epoch_on_digits(cls: type) -> None:
    torch.manual_seed(0)
    samples = {"max_train_samples": 128, "max_val_samples": 64, "epochs": 1}
    workload = cls(profile="tiny", options=cls.tiny_options, recipe_overrides=samples)
    assert workload.dataset == "digits"
    model = workload.build_model()
    history = Trainer(workload, device="cpu", progress=False).fit(model)
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["train_loss"]))
    assert history[0]["val_samples"] == 64 and 0.0 <= history[0]["val_top1"] <= 100.0
