"""DeepSpeech2 (Amodei et al., arXiv 1512.02595): 2-D convolutions + bidirectional GRUs + CTC over characters.

Architecture (paper §3.1-3.5, in the configuration of SeanNaren/deepspeech.pytorch v1, whose ``train.py`` defaults
are ``--rnn-type gru --hidden-size 800 --hidden-layers 5``):

- input: log spectrogram [N, 1, 161, T] (20 ms window, 10 ms hop at 16 kHz; see ``workloads/data/speech.py``);
- two 2-D convolutions over (frequency, time): 32 channels, kernels (41, 11) stride (2, 2) and (21, 11) stride (2, 1),
  each followed by batch norm and the clipped ReLU ``min(max(x, 0), 20)`` (paper §3.1, ``Hardtanh(0, 20)``);
  padded frames are re-zeroed after every conv module (deepspeech.pytorch ``MaskConv``);
- ``hidden_layers`` bidirectional GRU layers of ``hidden_size``; the two directions are summed (paper §3.1); every
  layer but the first gets sequence-wise batch norm on its input (paper §3.2: statistics over all frames of the
  minibatch); variable lengths are handled by packing (``pack_padded_sequence``);
- a fully connected layer (sequence-wise BN, then linear without bias) to 29 characters (blank, apostrophe, A-Z,
  space), trained with CTC (paper §3.1).

Paper profile: 5 x 800 bidirectional GRU (deepspeech.pytorch v1 defaults; 41.19M parameters at 161 input bins).
Recipe of deepspeech.pytorch v1: SGD lr 3e-4, momentum 0.9, 70 epochs, batch 20, gradient norm clipped at 400,
lr divided by 1.1 after every epoch (``--learning-anneal 1.1``); CTC loss summed over the batch and divided by the
batch size. Differs from the paper: no SortaGrad curriculum, no row convolution / lookahead (bidirectional model),
no language model in decoding (greedy CTC decoding); sequence-wise BN normalises the layer input before the GRU
and its statistics include padded frames (both as in deepspeech.pytorch; the paper normalises the input projection
W h inside the recurrence). The paper's own English models are larger (its ablations go up to 3 conv and 7
recurrent layers, §3); depth and width are explicit options here.

Tiny profile: the synthesized ``espeak-digits`` set with a smaller recorded variant (``conv_channels`` 8,
``hidden_size`` 192, ``hidden_layers`` 2) so that training reaches a useful CER on two CPU cores in minutes; the
resolved options are in ``describe()``. Metrics: WER and CER (%, corpus level: edit distance summed over utterances
divided by the reference length; CER ignores spaces, as deepspeech.pytorch's ``cer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from workloads.base import Recipe, Reference, Workload, WorkloadInfo, WorkloadOptions
from workloads.data.speech import (
    LABELS,
    SAMPLE_RATE,
    SpeechSet,
    Utterance,
    find_split_dirs,
    labels_to_text,
    read_espeak_digits,
    read_librispeech_dir,
    speech_collate,
)

SPLIT_SEED = 0
LIBRISPEECH_HOW = "download LibriSpeech from openslr.org/12 and extract it so that DIR/LibriSpeech/<split>/ exists"
LIBRISPEECH_SPLITS = {
    "librispeech-clean-100": {"train": ("train-clean-100",), "val": ("dev-clean",)},
    "librispeech": {"train": ("train-clean-100", "train-clean-360", "train-other-500"), "val": ("dev-clean",)},
}
LIBRISPEECH_EXAMPLE_FRAMES = 1600
PROFILE_OPTIONS = {
    "paper": {"conv_channels": 32, "hidden_size": 800, "hidden_layers": 5},
    "tiny": {"conv_channels": 8, "hidden_size": 192, "hidden_layers": 2},
}
PAPER_RECIPE = Recipe(
    epochs=70,
    batch_size=20,
    optimizer="sgd",
    lr=3e-4,
    momentum=0.9,
    schedule="step",
    step_size=1,
    gamma=1 / 1.1,
    grad_clip=400.0,
    source="SeanNaren/deepspeech.pytorch v1 train.py defaults (DeepSpeech2, 1512.02595)",
)
TINY_RECIPE = Recipe(
    epochs=8,
    batch_size=16,
    optimizer="adam",
    lr=1.5e-3,
    schedule="cosine",
    grad_clip=400.0,
    source="tiny CPU profile: espeak-digits, reduced width/depth variant (recorded in options), Adam, 8 epochs",
)
_T13 = "DeepSpeech2 (1512.02595) Table 13 (English, large model trained on ~12k h, with an n-gram LM)"
REFERENCES = (
    Reference("wer", 5.33, _T13, "LibriSpeech test-clean"),
    Reference("wer", 13.25, _T13, "LibriSpeech test-other"),
    Reference("wer", 3.60, _T13, "WSJ eval'92"),
    Reference("wer", 4.98, _T13, "WSJ eval'93"),
    Reference("wer", 14.5, "DSD (1607.04381) Table 1", "DeepSpeech-2 baseline on WSJ'93 as reported by the DSD paper"),
    Reference(
        "params",
        41_187_968,
        "counted from the deepspeech.pytorch v1 configuration (5 x 800 bi-GRU, 161 bins)",
        "not a published figure: neither the paper nor deepspeech.pytorch states it",
    ),
)


@dataclass
class DeepSpeech2Options(WorkloadOptions):
    """Explicit architecture options; ``None`` takes the profile's value (paper: 32 / 800 / 5, tiny: 8 / 192 / 2)."""

    conv_channels: int | None = None
    hidden_size: int | None = None
    hidden_layers: int | None = None
    bidirectional: bool = True


class SequenceBatchNorm(nn.Module):
    """Sequence-wise batch norm (DS2 §3.2): one BN over every (time, batch) position of [T, N, H]."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, n = x.shape[:2]
        return self.bn(x.reshape(t * n, -1)).reshape(t, n, -1)


class BatchRNN(nn.Module):
    """(Optional sequence-wise BN) -> GRU; bidirectional outputs summed (DS2 §3.1)."""

    def __init__(self, input_size: int, hidden_size: int, batch_norm: bool, bidirectional: bool) -> None:
        super().__init__()
        self.batch_norm = SequenceBatchNorm(input_size) if batch_norm else None
        self.rnn = nn.GRU(input_size, hidden_size, bidirectional=bidirectional, bias=True)
        self.bidirectional = bidirectional

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
        if self.bidirectional:
            out = out.view(out.shape[0], out.shape[1], 2, -1).sum(dim=2)
        return out


class DeepSpeech2(nn.Module):
    """``model(features [N, 1, F, T], lengths [N]) -> logits [N, T', 29]`` with ``T' = output_lengths(T)``."""

    def __init__(
        self,
        num_bins: int = 161,
        conv_channels: int = 32,
        hidden_size: int = 800,
        hidden_layers: int = 5,
        num_classes: int = len(LABELS),
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        c = conv_channels
        self.conv = nn.ModuleList(
            [
                nn.Conv2d(1, c, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)),
                nn.BatchNorm2d(c),
                nn.Hardtanh(0, 20, inplace=True),
                nn.Conv2d(c, c, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)),
                nn.BatchNorm2d(c),
                nn.Hardtanh(0, 20, inplace=True),
            ]
        )
        bins = num_bins
        for module in self.conv:
            if isinstance(module, nn.Conv2d):
                bins = (bins + 2 * module.padding[0] - module.kernel_size[0]) // module.stride[0] + 1
        self.rnns = nn.ModuleList(
            BatchRNN(c * bins if i == 0 else hidden_size, hidden_size, i > 0, bidirectional)
            for i in range(hidden_layers)
        )
        self.fc_norm = SequenceBatchNorm(hidden_size)
        self.fc = nn.Linear(hidden_size, num_classes, bias=False)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames after the convolutions' time strides: ``floor((T + 2p - k) / s) + 1`` per conv."""
        for module in self.conv:
            if isinstance(module, nn.Conv2d):
                lengths = self.output_lengths_of(module, lengths)
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = features
        current = lengths
        for module in self.conv:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                current = self.output_lengths_of(module, current)
            frames = torch.arange(x.shape[-1], device=x.device)
            x = x.masked_fill(frames[None, None, None, :] >= current[:, None, None, None].to(x.device), 0.0)
        n, c, f, t = x.shape
        x = x.reshape(n, c * f, t).permute(2, 0, 1).contiguous()  # [T', N, C*F]
        for rnn in self.rnns:
            x = rnn(x, current)
        x = self.fc(self.fc_norm(x))
        return x.transpose(0, 1)

    @staticmethod
    def output_lengths_of(conv: nn.Conv2d, lengths: torch.Tensor) -> torch.Tensor:
        """Frames after one convolution along time."""
        k, s, p = conv.kernel_size[1], conv.stride[1], conv.padding[1]
        return torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1


# ---- decoding and metrics ---------------------------------------------------------------------------------------
def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks (index 0)."""
    best = logits.argmax(dim=-1).cpu()
    texts = []
    for row, length in zip(best, lengths.tolist(), strict=True):
        path = row[: int(length)].tolist()
        merged = [p for i, p in enumerate(path) if p != 0 and (i == 0 or p != path[i - 1])]
        texts.append(labels_to_text(merged))
    return texts


def edit_distance(ref: Sequence[Any], hyp: Sequence[Any]) -> int:
    """Levenshtein distance (unit costs for substitution, insertion, deletion), one row at a time."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def ctc_loss_sum(
    logits: torch.Tensor, out_lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor
) -> torch.Tensor:
    """CTC negative log-likelihood (DS2 §3.1) of ``logits`` [N, T, C], summed over the batch; blank = 0."""
    log_probs = logits.transpose(0, 1).log_softmax(dim=-1)
    targets, out_lengths, target_lengths = (t.to(logits.device) for t in (targets, out_lengths, target_lengths))
    return F.ctc_loss(log_probs, targets, out_lengths, target_lengths, blank=0, reduction="sum", zero_infinity=True)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER in %: summed edit distances over summed reference lengths (CER without spaces)."""
    word_err = sum(edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses, strict=True))
    words = sum(len(r.split()) for r in references)
    char_err = sum(
        edit_distance(r.replace(" ", ""), h.replace(" ", "")) for r, h in zip(references, hypotheses, strict=True)
    )
    chars = sum(len(r.replace(" ", "")) for r in references)
    return {"wer": 100.0 * word_err / max(words, 1), "cer": 100.0 * char_err / max(chars, 1)}


class DeepSpeech2Workload(Workload):
    info = WorkloadInfo(
        name="deepspeech2",
        paper="1512.02595",
        task="speech-recognition",
        metric="wer",
        higher_is_better=False,
        datasets=("espeak-digits", *LIBRISPEECH_SPLITS),
        default_dataset="espeak-digits",
        kind="speech",
        references=REFERENCES,
        description="DeepSpeech2: 2 conv + bidirectional GRUs + CTC (deepspeech.pytorch configuration)",
    )
    recipes = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE}
    Options = DeepSpeech2Options

    @property
    def architecture(self) -> dict[str, Any]:
        """Resolved architecture: explicit options over the profile's values."""
        values = dict(PROFILE_OPTIONS[self.profile])
        for key in values:
            if getattr(self.options, key) is not None:
                values[key] = getattr(self.options, key)
        return {**values, "bidirectional": self.options.bidirectional}  # type: ignore[attr-defined]

    def build_model(self) -> nn.Module:
        return DeepSpeech2(num_bins=int(SAMPLE_RATE * 0.02) // 2 + 1, **self.architecture)

    def utterances(self, split: str) -> list[Utterance]:
        if self.dataset == "espeak-digits":
            return read_espeak_digits(split, self.data_root)
        dirs = find_split_dirs(self.dataset, self.data_root, LIBRISPEECH_SPLITS[self.dataset][split], LIBRISPEECH_HOW)
        return [u for d in dirs for u in read_librispeech_dir(d)]

    @cached_property
    def _splits(self) -> dict[str, SpeechSet]:
        limits = {"train": self.recipe.max_train_samples, "val": self.recipe.max_val_samples}
        sets = {}
        for split, limit in limits.items():
            utts = self.utterances(split)
            if limit is not None and limit < len(utts):
                keep = torch.randperm(len(utts), generator=torch.Generator().manual_seed(SPLIT_SEED))[:limit]
                utts = [utts[i] for i in sorted(keep.tolist())]
            sets[split] = SpeechSet(utts, cache=len(utts) <= 5000)
        return sets

    def split(self, split: str) -> SpeechSet:
        if split not in ("train", "val"):
            raise ValueError(f"Unknown split {split!r}; use 'train' or 'val'")
        return self._splits[split]

    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        shuffle = (split == "train") if shuffle is None else shuffle
        generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        return DataLoader(
            self.split(split),
            batch_size=batch_size or self.recipe.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=speech_collate,
        )

    @cached_property
    def example_frames(self) -> int:
        """Fixed time length of ``example_inputs`` (exported graphs have a static time axis): the longest validation
        utterance of the embedded set, or ``LIBRISPEECH_EXAMPLE_FRAMES`` (16 s; longer utterances are cropped)."""
        if self.dataset != "espeak-digits":
            return LIBRISPEECH_EXAMPLE_FRAMES
        data = self.split("val")
        return max(int(data[i][0].shape[1]) for i in range(len(data)))

    def example_inputs(
        self, batch_size: int, device: str | torch.device = "cpu", offset: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """Real validation spectrograms [N, 1, 161, example_frames] (zero-padded or cropped) and their lengths."""
        data = self.split("val")
        start = (offset * batch_size) % len(data)
        frames = self.example_frames
        items = [data[(start + i) % len(data)] for i in range(batch_size)]
        features, lengths, _, _ = speech_collate([(f[:, :frames], t) for f, t in items])
        features = F.pad(features, (0, frames - features.shape[-1]))
        return features.to(device), lengths.to(device)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """CTC (DS2 §3.1) summed over the batch and divided by the batch size, as deepspeech.pytorch."""
        features, lengths, targets, target_lengths = batch
        logits = model(features, lengths)
        return ctc_loss_sum(logits, _output_lengths(model, lengths), targets, target_lengths) / features.shape[0]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, device: str | torch.device) -> dict[str, float]:
        was_training = model.training
        model.eval()
        refs, hyps, loss_sum = [], [], 0.0
        for features, lengths, targets, target_lengths in loader:
            logits = model(features.to(device), lengths.to(device))
            out_lengths = _output_lengths(model, lengths)
            loss_sum += float(ctc_loss_sum(logits, out_lengths, targets, target_lengths))
            hyps.extend(greedy_decode(logits, out_lengths))
            refs.extend(labels_to_text(t.tolist()) for t in torch.split(targets, target_lengths.tolist()))
        model.train(was_training)
        metrics = error_rates(refs, hyps)
        metrics.update({"loss": loss_sum / max(len(refs), 1), "samples": float(len(refs))})
        return metrics

    def describe(self) -> dict[str, Any]:
        description = super().describe()
        description["architecture"] = self.architecture
        return description

    def preprocessing(self) -> dict[str, Any]:
        return {
            "features": "log(1 + |STFT|), Hamming 20 ms window, 10 ms hop, per-utterance mean/std normalisation",
            "sample_rate": SAMPLE_RATE,
            "bins": int(SAMPLE_RATE * 0.02) // 2 + 1,
            "labels": LABELS,
            "train_samples": len(self.split("train")),
            "val_samples": len(self.split("val")),
        }


def _output_lengths(model: nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """Output frame counts of a (possibly wrapped) DeepSpeech2 model."""
    core = next((m for m in model.modules() if isinstance(m, DeepSpeech2)), None)
    if core is None:
        raise TypeError(f"Expected a DeepSpeech2 model, got {type(model).__name__}")
    return core.output_lengths(lengths)
