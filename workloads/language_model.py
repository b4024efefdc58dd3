"""Recurrent language models: Zaremba et al. 2014 (arXiv 1409.2329) LSTM LM, its GRU twin, word and char level.

Architecture (paper §3-4, "medium" regularised LSTM): embedding (650) -> 2-layer LSTM (650 units) -> linear softmax
over the vocabulary (10k words on PTB); dropout 0.5 on the non-recurrent connections only: the embedding output,
between the layers and before the softmax (``nn.LSTM(dropout=p)`` drops between layers, the model drops the other
two). All parameters start uniform in [-0.05, 0.05]; embedding and softmax weights are not tied.
Paper recipe: plain SGD lr 1, gradients clipped at norm 5, BPTT 35 with the hidden state carried (and detached)
across windows, batch 20, 39 epochs, lr divided by 1.2 after each epoch from epoch 7 on ("after 6 epochs").
Reference: PTB perplexity 86.2 val / 82.7 test (paper Table 1, medium regularised LSTM).

Faithful: the architecture, init, dropout placement, SGD/clip/BPTT recipe and the carried state. Differs:
PyTorch's LSTM/GRU have two bias vectors per gate (``bias_ih`` and ``bias_hh``), so the paper model has 19,780,400
parameters here instead of 19,775,200 with one bias; the GRU variants (``gru_lm``, ``gru_char``) replace the LSTM by
a GRU of the same size (the recurrent workloads of QNN, arXiv 1609.07061, and RNN ternarisation, arXiv 1608.06902);
``lstm_char``/``gru_char`` apply the same architecture and recipe to characters with BPTT 100, a choice of this
suite (no published configuration is reproduced), reporting bits per character. The lr decay needs the Trainer
schedule ``"exponential"`` (constant for ``step_size`` epochs, then x``gamma`` per epoch).
Tiny profile: Zaremba's "small" size, set through the recorded options ``hidden=200, dropout=0, init_scale=0.1``
(BPTT 20 for words, 50 for characters), trained with Adam (not the paper's SGD) for 3 epochs on the first 100k
words / 200k characters of the embedded ``fortunes`` corpus: a few CPU minutes.

How a compressor reaches the weights (``model`` is a :class:`RNNLanguageModel`):

* ``model.encoder.weight`` [V, E]: input embedding; ``model.decoder.weight`` [V, H], ``model.decoder.bias``: softmax.
* ``model.rnn`` is a standard ``nn.LSTM``/``nn.GRU`` (``batch_first=True``); for layer ``k``:
  ``model.rnn.weight_ih_l{k}`` input weights [G*H, in], ``model.rnn.weight_hh_l{k}`` recurrent weights [G*H, H],
  ``model.rnn.bias_ih_l{k}`` / ``model.rnn.bias_hh_l{k}`` biases [G*H]; gates stacked (i, f, g, o) for LSTM (G=4),
  (r, z, n) for GRU (G=3). :meth:`RNNLanguageModel.recurrent_weights` lists them with their role.
* To quantize them, register a parametrization
  (``torch.nn.utils.parametrize.register_parametrization(model.rnn, "weight_hh_l0", Quantizer())``): ``nn.LSTM``
  re-reads its weights at every forward, so the quantized tensor is what runs; or assign a new Parameter
  (``model.rnn.weight_hh_l0 = nn.Parameter(q)``), which ``nn.RNNBase.__setattr__`` picks up.
* ``forward(tokens [B, T], state=None) -> (logits [B, T, V], state)``; compressors must keep this signature.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import flop_registry, register_flop_formula

from workloads.base import Recipe, Reference, Workload, WorkloadInfo, WorkloadOptions
from workloads.data.text import TEXT_DATASETS, LMWindows, Vocab, batchify, read_corpus, unigram_cross_entropy

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
ZAREMBA = "Zaremba, Sutskever & Vinyals 2014 (arXiv 1409.2329)"


class RNNLanguageModel(nn.Module):
    """Embedding -> multi-layer LSTM/GRU -> linear softmax, dropout on non-recurrent connections (Zaremba §3)."""

    def __init__(
        self, cell: str, vocab_size: int, embedding: int, hidden: int, layers: int, dropout: float, init_scale: float
    ) -> None:
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.cell = cell
        self.encoder = nn.Embedding(vocab_size, embedding)
        self.drop = nn.Dropout(dropout)
        between = dropout if layers > 1 else 0.0
        self.rnn = rnn_cls(embedding, hidden, num_layers=layers, dropout=between, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab_size)
        for param in self.parameters():  # Zaremba §4: uniform in [-init_scale, init_scale]
            nn.init.uniform_(param, -init_scale, init_scale)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        out, state = self.rnn(self.drop(self.encoder(tokens)), state)
        return self.decoder(self.drop(out)), state

    def recurrent_weights(self) -> list[tuple[str, nn.Parameter, str]]:
        """``(name in model.rnn, parameter, role)`` with role input_weight | recurrent_weight | bias."""
        roles = {"weight_ih": "input_weight", "weight_hh": "recurrent_weight", "bias_ih": "bias", "bias_hh": "bias"}
        return [(name, param, roles[name.rsplit("_", 1)[0]]) for name, param in self.rnn.named_parameters()]


def detach_state(state: State) -> State:
    """Cut the graph between BPTT windows (the values carry over, the gradients do not)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


def _state_batch(state: State) -> int:
    return int((state[0] if isinstance(state, tuple) else state).shape[1])


# ---- FLOP formulas for fused RNN kernels (FlopCounterMode has none) ------------------------------------------------
def _rnn_matmul_flops(input_shape: Any, weight_shapes: Iterable[Any]) -> int:
    """2 x tokens x sum of the weight matrices' elements: each matrix multiplies every token once (matmul = 2mnk).

    Biases and the gates' element-wise ops are not counted, as FlopCounterMode counts no element-wise op.
    """
    tokens = math.prod(input_shape[:-1])
    return 2 * tokens * sum(math.prod(s) for s in weight_shapes if s is not None and len(s) == 2)


def _register_rnn_flop_formulas() -> None:
    aten = torch.ops.aten

    def mkldnn_layer(input_shape: Any, w_ih: Any, w_hh: Any, *args: Any, **kwargs: Any) -> int:
        return _rnn_matmul_flops(input_shape, (w_ih, w_hh))

    def cudnn_rnn(input_shape: Any, weights: Any, *args: Any, **kwargs: Any) -> int:
        return _rnn_matmul_flops(input_shape, weights)

    def fused_cell(*args: Any, **kwargs: Any) -> int:
        return 0  # element-wise gate math only; the gate matmuls are separate, counted aten.mm/addmm calls

    formulas = {
        aten.mkldnn_rnn_layer: mkldnn_layer,
        aten._cudnn_rnn: cudnn_rnn,
        aten.miopen_rnn: cudnn_rnn,
        aten._thnn_fused_lstm_cell: fused_cell,
        aten._thnn_fused_gru_cell: fused_cell,
    }
    for op, formula in formulas.items():
        if op not in flop_registry:
            register_flop_formula(op)(formula)


_register_rnn_flop_formulas()


# ---- the workload ------------------------------------------------------------------------------------------------
@dataclass
class LMOptions(WorkloadOptions):
    """Architecture and data options; defaults are Zaremba's medium model on a 10k-word vocabulary.

    ``embedding=None`` means the embedding has ``hidden`` units (as in the paper). ``min_count``/``max_vocab``
    build the vocabulary from the train split (PTB ships exactly 10k words, so the cap changes nothing there).
    """

    hidden: int = 650
    layers: int = 2
    embedding: int | None = None
    dropout: float = 0.5
    init_scale: float = 0.05
    bptt: int = 35
    min_count: int = 1
    max_vocab: int | None = 10000


@dataclass
class CharLMOptions(LMOptions):
    bptt: int = 100
    max_vocab: int | None = None


PAPER_RECIPE = Recipe(
    epochs=39,
    batch_size=20,
    optimizer="sgd",
    lr=1.0,
    momentum=0.0,
    weight_decay=0.0,
    schedule="exponential",
    step_size=6,
    gamma=1 / 1.2,
    grad_clip=5.0,
    source=f"{ZAREMBA} §4 medium LSTM: SGD lr 1, clip 5, BPTT 35, batch 20, 39 epochs, /1.2 per epoch after 6",
)
TINY_RECIPE = Recipe(
    epochs=3,
    batch_size=20,
    optimizer="adam",
    lr=3e-3,
    momentum=0.0,
    weight_decay=0.0,
    schedule="cosine",
    grad_clip=5.0,
    max_train_samples=100_000,
    max_val_samples=20_000,
    source="tiny CPU profile: Adam 3e-3 with cosine decay and Zaremba's clip 5 (plain SGD lr 1 does not move past "
    "the unigram model in a few hundred steps), first 100k train tokens (max_*_samples count tokens), "
    "val on the first 20k",
)
TINY_CHAR_RECIPE = TINY_RECIPE.replace(
    max_train_samples=200_000,
    max_val_samples=40_000,
    source=TINY_RECIPE.source.replace("100k", "200k").replace("20k", "40k"),
)
TINY_WORD_OPTIONS = {"hidden": 200, "dropout": 0.0, "init_scale": 0.1, "bptt": 20}  # Zaremba's "small" model
TINY_CHAR_OPTIONS = {"hidden": 200, "dropout": 0.0, "init_scale": 0.1, "bptt": 50}


@dataclass
class LMData:
    vocab: Vocab
    train: torch.Tensor
    val: torch.Tensor
    unigram_nats: float
    files: list[str]
    split_rule: str


class LanguageModelWorkload(Workload):
    """Shared machinery: corpus -> vocab -> streams -> BPTT windows; carried state; perplexity / bits per char."""

    cell: ClassVar[str]
    level: ClassVar[str]
    profile_options: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(
        self,
        profile: str = "tiny",
        dataset: str | None = None,
        data_root: str | None = None,
        options: dict[str, Any] | None = None,
        recipe_overrides: dict[str, Any] | None = None,
    ) -> None:
        defaults = self.profile_options.get(profile, {})
        self.profile_option_defaults = {k: v for k, v in defaults.items() if k not in (options or {})}
        super().__init__(profile, dataset, data_root, {**defaults, **(options or {})}, recipe_overrides)
        self._carried: weakref.WeakKeyDictionary[nn.Module, State] = weakref.WeakKeyDictionary()

    @property
    def opts(self) -> LMOptions:
        return self.options  # type: ignore[return-value]

    @cached_property
    def data(self) -> LMData:
        opts = self.opts
        corpus = read_corpus(self.dataset, self.data_root, self.level)
        vocab = Vocab.build(corpus.train, opts.min_count, opts.max_vocab)
        train = vocab.encode(corpus.train)[: self.recipe.max_train_samples]
        val = vocab.encode(corpus.val)[: self.recipe.max_val_samples]
        nats = unigram_cross_entropy(train, val, len(vocab))
        return LMData(vocab, train, val, nats, corpus.files, corpus.split_rule)

    def build_model(self) -> nn.Module:
        o = self.opts
        return RNNLanguageModel(
            self.cell, len(self.data.vocab), o.embedding or o.hidden, o.hidden, o.layers, o.dropout, o.init_scale
        )

    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        """Sequential BPTT windows over ``batch_size`` streams; never shuffled (the hidden state carries over)."""
        if split not in ("train", "val"):
            raise ValueError(f"Unknown split {split!r}; use 'train' or 'val'")
        ids = self.data.train if split == "train" else self.data.val
        windows = LMWindows(batchify(ids, batch_size or self.recipe.batch_size), self.opts.bptt)
        return DataLoader(windows, batch_size=None, shuffle=False)

    def example_inputs(
        self, batch_size: int, device: str | torch.device = "cpu", offset: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """``batch_size`` real val windows of ``bptt`` tokens; ``offset`` moves to the next windows."""
        ids, bptt = self.data.val, min(self.opts.bptt, self.data.val.numel())
        span = max(ids.numel() - bptt, 1)
        starts = [((offset * batch_size + i) * bptt) % span for i in range(batch_size)]
        return (torch.stack([ids[s : s + bptt] for s in starts]).to(device),)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean cross-entropy of one window; the state of the previous window is carried in, detached."""
        inputs, targets, first = batch
        state = None if bool(first) else self._carried.get(model)
        if state is not None and _state_batch(state) != inputs.shape[0]:
            state = None
        logits, state = model(inputs, state)
        self._carried[model] = detach_state(state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, device: str | torch.device) -> dict[str, float]:
        """Per-token NLL over the whole split with the state carried across windows."""
        was_training = model.training
        model.eval()
        total, count, state = 0.0, 0, None
        for inputs, targets, first in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            logits, state = model(inputs, None if bool(first) else state)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"))
            count += targets.numel()
        model.train(was_training)
        return lm_metrics(total / max(count, 1), count, self.level)

    def preprocessing(self) -> dict[str, Any]:
        d = self.data
        return {
            "level": self.level,
            "vocab_size": len(d.vocab),
            "vocab_rule": f"whole train split (before max_train_samples); min_count={self.opts.min_count}, "
            f"max_vocab={self.opts.max_vocab}; others -> <unk>",
            "train_tokens": int(d.train.numel()),
            "val_tokens": int(d.val.numel()),
            "val_unk_rate": float((d.val == d.vocab.unk_id).float().mean()),
            "unigram_val": lm_metrics(d.unigram_nats, int(d.val.numel()), self.level),
            "batching": f"{self.recipe.batch_size} contiguous streams, BPTT {self.opts.bptt}, "
            "state carried and detached across windows, never shuffled",
            "split_rule": d.split_rule,
            "files": d.files[:8] + ([f"... {len(d.files) - 8} more"] if len(d.files) > 8 else []),
            "profile_option_defaults": self.profile_option_defaults,
            "dataset_source": TEXT_DATASETS[self.dataset].source,
        }


def lm_metrics(nats: float, tokens: int, level: str) -> dict[str, float]:
    """Loss (nats/token), perplexity = exp(loss), and loss / ln 2 named for the unit the tokens are: bits_per_char
    for a character vocabulary, bits_per_token for a word or subword one."""
    return {
        "loss": nats,
        "perplexity": math.exp(min(nats, 700.0)),
        "bits_per_char" if level == "char" else "bits_per_token": nats / math.log(2),
        "tokens": float(tokens),
    }


DATASETS = ("fortunes", "ptb", "wikitext2", "text8")
ZAREMBA_REFS = (
    Reference("perplexity", 86.2, f"{ZAREMBA} Table 1", "PTB validation, medium regularised LSTM"),
    Reference("perplexity_test", 82.7, f"{ZAREMBA} Table 1", "PTB test, medium regularised LSTM"),
    Reference("params", 19_780_400, "hand count, PyTorch LSTM (two bias vectors per gate); 19,775,200 with one"),
)
GRU_REFS = (Reference("params", 18_087_800, "hand count of the same model with a 2x650 GRU (two bias vectors)"),)


def _make(name: str, cell: str, level: str) -> type[LanguageModelWorkload]:
    word = level == "word"
    info = WorkloadInfo(
        name=name,
        paper="1409.2329",
        task="language-modeling",
        metric="perplexity" if word else "bits_per_char",
        higher_is_better=False,
        datasets=DATASETS,
        default_dataset="fortunes",
        kind="rnn",
        references=(ZAREMBA_REFS if cell == "lstm" else GRU_REFS) if word else (),
        description=f"{level}-level 2-layer {cell.upper()} language model (Zaremba et al. 2014 medium size)",
    )
    attrs = {
        "info": info,
        "cell": cell,
        "level": level,
        "Options": LMOptions if word else CharLMOptions,
        "recipes": {"tiny": TINY_RECIPE if word else TINY_CHAR_RECIPE, "paper": PAPER_RECIPE},
        "profile_options": {"tiny": TINY_WORD_OPTIONS if word else TINY_CHAR_OPTIONS},
        "__module__": __name__,
    }
    return type(f"{cell.upper()}{level.capitalize()}LM", (LanguageModelWorkload,), attrs)


LSTMLanguageModel = _make("lstm_lm", "lstm", "word")
GRULanguageModel = _make("gru_lm", "gru", "word")
LSTMCharModel = _make("lstm_char", "lstm", "char")
GRUCharModel = _make("gru_char", "gru", "char")
