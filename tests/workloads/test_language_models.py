"""Recurrent LM workloads: parameter counts, FLOP formulas, carried state, metrics, weight access, a train smoke."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from harness.meters.flops import count_flops
from harness.train import Trainer
from workloads import WORKLOADS
from workloads.data.text import FORTUNES_SYSTEM_DIR
from workloads.language_model import LMOptions, RNNLanguageModel

SENTENCES = ["the cat sat on the mat", "a dog ate the bone", "the bird sang a song"]


def _write_ptb(root: Path, lines: int = 300) -> None:
    for split, count in (("train", lines), ("valid", lines // 3), ("test", 10)):
        body = "\n".join(f" {SENTENCES[i % 3]} " for i in range(count))
        (root / f"ptb.{split}.txt").write_text(body + "\n")


def _workload(name: str, root: Path, **options: object) -> object:
    opts = {"hidden": 16, "dropout": 0.0, "bptt": 5, **options}
    return WORKLOADS.get(name)(
        profile="tiny", dataset="ptb", data_root=str(root), options=opts, recipe_overrides={"batch_size": 4}
    )


def test_paper_lstm_parameter_count_matches_hand_count() -> None:
    opts = LMOptions()
    assert (opts.hidden, opts.layers, opts.dropout, opts.bptt) == (650, 2, 0.5, 35)
    model = RNNLanguageModel("lstm", 10000, opts.hidden, opts.hidden, opts.layers, opts.dropout, opts.init_scale)
    embedding = 10000 * 650
    layer = 4 * 650 * (650 + 650) + 2 * 4 * 650  # W_ih, W_hh and two bias vectors per gate
    decoder = 650 * 10000 + 10000
    assert embedding + 2 * layer + decoder == 19_780_400
    assert sum(p.numel() for p in model.parameters()) == 19_780_400
    gru = RNNLanguageModel("gru", 10000, 650, 650, 2, 0.5, 0.05)
    assert sum(p.numel() for p in gru.parameters()) == embedding + 2 * (3 * 650 * 1300 + 2 * 3 * 650) + decoder


def test_paper_profile_recipe_is_zaremba_medium() -> None:
    recipe = WORKLOADS.get("lstm_lm").recipes["paper"]
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum, recipe.grad_clip) == (39, 20, 1.0, 0.0, 5.0)
    assert (recipe.schedule, recipe.step_size) == ("exponential", 6) and recipe.gamma == pytest.approx(1 / 1.2)


def test_paper_schedule_lr_sequence() -> None:
    from harness.train import make_scheduler

    recipe = WORKLOADS.get("lstm_lm").recipes["paper"]
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    scheduler = make_scheduler(optimizer, recipe, recipe.epochs)
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:6] == [1.0] * 6
    assert lrs[6] == pytest.approx(1 / 1.2) and lrs[7] == pytest.approx(1 / 1.44)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_flop_count_equals_hand_count(cell: str) -> None:
    vocab, hidden, steps, gates = 50, 24, 7, 4 if cell == "lstm" else 3
    model = RNNLanguageModel(cell, vocab, hidden, hidden, 2, 0.0, 0.1)
    result = count_flops(model, (torch.randint(0, vocab, (2, steps)),))
    tokens = 2 * steps
    expected = 2 * tokens * (2 * gates * hidden * (hidden + hidden) + hidden * vocab)
    assert result["flops"] == expected
    assert result["heavy_unsupported_ops"] == []


def test_recurrent_weights_are_reachable_and_quantizable() -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel("lstm", 30, 8, 8, 2, 0.0, 0.1).eval()
    roles = {name: role for name, _, role in model.recurrent_weights()}
    assert roles["weight_ih_l0"] == "input_weight" and roles["weight_hh_l1"] == "recurrent_weight"
    assert roles["bias_hh_l0"] == "bias" and len(roles) == 8
    tokens = torch.randint(0, 30, (2, 6))
    before = model(tokens)[0]

    class Ternary(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return 0.05 * torch.sign(w) * (w.abs() > 0.05)

    parametrize.register_parametrization(model.rnn, "weight_hh_l0", Ternary())
    assert torch.allclose(model.rnn.weight_hh_l0.unique(), torch.tensor([-0.05, 0.0, 0.05]))
    after = model(tokens)[0]
    reference = RNNLanguageModel("lstm", 30, 8, 8, 2, 0.0, 0.1).eval()
    reference.load_state_dict(
        {k.replace("parametrizations.weight_hh_l0.original", "weight_hh_l0"): v for k, v in model.state_dict().items()}
    )
    reference.rnn.weight_hh_l0 = nn.Parameter(model.rnn.weight_hh_l0.detach().clone())
    assert not torch.allclose(before, after)
    assert torch.allclose(after, reference(tokens)[0], atol=1e-6)


def test_dropout_only_in_training() -> None:
    model = RNNLanguageModel("gru", 20, 8, 8, 2, 0.5, 0.1)
    tokens = torch.randint(0, 20, (3, 4))
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])
    model.eval()
    assert torch.equal(model(tokens)[0], model(tokens)[0])


def test_batching_shapes_and_example_inputs(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    workload = _workload("lstm_lm", tmp_path)
    inputs, targets, first = next(iter(workload.dataloader("train")))
    assert inputs.shape == (4, 5) and targets.shape == (4, 5) and bool(first)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    (a,), (b,) = workload.example_inputs(3, offset=0), workload.example_inputs(3, offset=1)
    assert a.shape == (3, 5) and a.dtype == torch.long and not torch.equal(a, b)
    assert int(a.max()) < len(workload.data.vocab) and len(set(a.flatten().tolist())) > 1
    assert workload.preprocessing()["vocab_size"] == 14  # 12 words + <unk> + <eos>


def test_carried_state_equals_one_long_sequence(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    workload = _workload("lstm_lm", tmp_path)
    torch.manual_seed(0)
    model = workload.build_model()
    windows = iter(workload.dataloader("train"))
    w0, w1 = next(windows), next(windows)
    loss0, loss1 = workload.loss(model, w0), workload.loss(model, w1)
    logits, _ = model(torch.cat([w0[0], w1[0]], dim=1))
    full = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.cat([w0[1], w1[1]], dim=1).reshape(-1))
    assert float((loss0 + loss1).detach() / 2) == pytest.approx(float(full.detach()), rel=1e-5)
    fresh = workload.loss(model, (w1[0], w1[1], torch.tensor(True)))  # reset: no carried state
    assert abs(float(fresh.detach()) - float(loss1.detach())) > 1e-6


def test_uniform_model_has_perplexity_equal_to_vocab(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    word = _workload("gru_lm", tmp_path)
    model = word.build_model()
    nn.init.zeros_(model.decoder.weight)
    nn.init.zeros_(model.decoder.bias)
    metrics = word.evaluate(model, word.dataloader("val"), "cpu")
    vocab = len(word.data.vocab)
    assert metrics["perplexity"] == pytest.approx(vocab) and metrics["loss"] == pytest.approx(math.log(vocab))
    assert metrics["bits_per_token"] == pytest.approx(math.log2(vocab)) and "bits_per_char" not in metrics
    char = _workload("gru_char", tmp_path)
    cmodel = char.build_model()
    nn.init.zeros_(cmodel.decoder.weight)
    nn.init.zeros_(cmodel.decoder.bias)
    cmetrics = char.evaluate(cmodel, char.dataloader("val"), "cpu")
    assert cmetrics["bits_per_char"] == pytest.approx(math.log2(len(char.data.vocab)))
    assert char.info.metric == "bits_per_char" and word.info.metric == "perplexity"
    assert not char.info.higher_is_better and not word.info.higher_is_better


def test_tiny_profile_records_its_option_defaults(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    workload = WORKLOADS.get("lstm_char")(
        profile="tiny", dataset="ptb", data_root=str(tmp_path), options={"hidden": 12}
    )
    described = workload.describe()
    assert described["options"]["hidden"] == 12 and described["options"]["dropout"] == 0.0
    assert "hidden" not in described["preprocessing"]["profile_option_defaults"]
    assert described["preprocessing"]["profile_option_defaults"]["init_scale"] == 0.1
    paper = WORKLOADS.get("lstm_char")(profile="paper", dataset="ptb", data_root=str(tmp_path))
    assert paper.options.hidden == 650 and paper.preprocessing()["profile_option_defaults"] == {}


@pytest.mark.parametrize("name", ["lstm_lm", "gru_char"])
def test_train_smoke_beats_unigram(tmp_path: Path, name: str) -> None:
    _write_ptb(tmp_path, lines=90)
    torch.manual_seed(0)
    workload = _workload(name, tmp_path, hidden=32, bptt=20)
    workload.recipe = workload.recipe.replace(epochs=4, schedule="none", optimizer="adam", lr=0.02)
    model = workload.build_model()
    history = Trainer(workload, progress=False).fit(model)
    unigram = workload.preprocessing()["unigram_val"]["loss"]
    assert history[-1]["val_loss"] < 0.6 * unigram
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_fortunes_default_corpus() -> None:
    if not FORTUNES_SYSTEM_DIR.is_dir():
        pytest.skip(f"{FORTUNES_SYSTEM_DIR} is absent (apt-get install -y fortunes)")
    workload = WORKLOADS.get("lstm_lm")(profile="tiny")
    pre = workload.preprocessing()
    assert workload.dataset == "fortunes" and pre["vocab_size"] == 10000
    assert pre["train_tokens"] == workload.recipe.max_train_samples
    assert pre["unigram_val"]["perplexity"] > 100
