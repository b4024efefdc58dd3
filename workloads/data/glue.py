"""GLUE task readers (Wang et al., arXiv 1804.07461) in the TSV layout of the official ``download_glue_data.py``.

Files are read from ``<data-root>/glue/<TASK>/`` (or ``<data-root>/<TASK>/``): ``train.tsv`` for training and
``dev.tsv`` for validation (MNLI: ``dev_matched.tsv``; ``dev_mismatched.tsv`` is the ``glue-mnli-mm`` dataset).
The GLUE test sets carry no labels, so the dev set is the evaluation split, as in BERT's own GLUE dev figures.

Parsing follows the GLUE processors of google-research/bert ``run_classifier.py``: tab-separated, no quote
characters (GLUE text contains bare ``"``), a header line except for CoLA, and columns located by header name.
Rows with too few columns (a handful of malformed QQP lines) are skipped and counted, as the reference
processors do; a file where most rows are malformed raises :class:`DatasetFormatError`.

:func:`multiclass_metrics` computes GLUE's metrics: accuracy, F1 of the positive class (MRPC, QQP) and Matthews
correlation (CoLA), all x100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError

HOW_TO_GET = (
    "run the GLUE download script (github.com/nyu-mll/GLUE-baselines, download_glue_data.py --tasks all) and "
    "place the task folders (SST-2, MNLI, MRPC, ...) under DIR/glue/"
)


@dataclass(frozen=True)
class TextExample:
    """One labelled example: a sentence or a sentence pair."""

    text_a: str
    text_b: str | None
    label: int


@dataclass(frozen=True)
class GlueTaskSpec:
    """Where a GLUE task's columns are and what its labels mean.

    Attributes:
        name: dataset name in the suite (``glue-sst2``).
        folder: GLUE's directory name (``SST-2``).
        text_columns: header names of the sentence column(s), or integer positions for header-less files.
        label_column: header name (or position) of the label.
        labels: label strings in class-index order.
        extra_metrics: metrics besides accuracy that GLUE reports for this task (``f1``, ``mcc``).
        has_header: whether the first line is a header.
        dev_file: file name of the evaluation split.
    """

    name: str
    folder: str
    text_columns: tuple[str | int, ...]
    label_column: str | int
    labels: tuple[str, ...]
    extra_metrics: tuple[str, ...] = ()
    has_header: bool = True
    dev_file: str = "dev.tsv"

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


GLUE_TASKS: dict[str, GlueTaskSpec] = {
    spec.name: spec
    for spec in (
        GlueTaskSpec("glue-sst2", "SST-2", ("sentence",), "label", ("0", "1")),
        GlueTaskSpec("glue-cola", "CoLA", (3,), 1, ("0", "1"), ("mcc",), has_header=False),
        GlueTaskSpec("glue-mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("f1",)),
        GlueTaskSpec("glue-qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), ("f1",)),
        GlueTaskSpec(
            "glue-mnli",
            "MNLI",
            ("sentence1", "sentence2"),
            "gold_label",
            ("contradiction", "entailment", "neutral"),
            dev_file="dev_matched.tsv",
        ),
        GlueTaskSpec(
            "glue-mnli-mm",
            "MNLI",
            ("sentence1", "sentence2"),
            "gold_label",
            ("contradiction", "entailment", "neutral"),
            dev_file="dev_mismatched.tsv",
        ),
        GlueTaskSpec("glue-qnli", "QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment")),
        GlueTaskSpec("glue-rte", "RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment")),
    )
}


def find_task_file(spec: GlueTaskSpec, split: str, root: str | Path | None) -> Path:
    """The TSV file of ``split`` ('train' or 'val'), or :class:`DatasetNotFoundError` naming what was searched."""
    if split not in ("train", "val"):
        raise ValueError(f"Unknown split {split!r}; use 'train' or 'val'")
    file_name = "train.tsv" if split == "train" else spec.dev_file
    dirs = [Path(root) / "glue" / spec.folder, Path(root) / spec.folder] if root else []
    for directory in dirs:
        if (directory / file_name).is_file():
            return directory / file_name
    searched = [d / file_name for d in dirs] or [f"<--data-root>/glue/{spec.folder}/{file_name}"]
    raise DatasetNotFoundError(spec.name, searched, HOW_TO_GET)


def _column_index(header: Sequence[str] | None, column: str | int, path: Path) -> int:
    if isinstance(column, int):
        return column
    if header is None or column not in header:
        raise DatasetFormatError(path, f"TSV with a header naming column {column!r}", f"header is {list(header or [])}")
    return list(header).index(column)


def read_glue_tsv(spec: GlueTaskSpec, path: str | Path) -> tuple[list[TextExample], int]:
    """Parse one GLUE TSV file.

    Returns:
        The examples and the number of malformed rows skipped (too few columns or an unknown label).
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split("\t") if spec.has_header and lines else None
    body = lines[1:] if spec.has_header else lines
    text_idx = [_column_index(header, c, path) for c in spec.text_columns]
    label_idx = _column_index(header, spec.label_column, path)
    label_of = {name: i for i, name in enumerate(spec.labels)}
    needed = max([*text_idx, label_idx]) + 1
    examples: list[TextExample] = []
    skipped = 0
    for line in body:
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < needed or cells[label_idx].strip() not in label_of:
            skipped += 1
            continue
        texts = [cells[i].strip() for i in text_idx]
        examples.append(TextExample(texts[0], texts[1] if len(texts) > 1 else None, label_of[cells[label_idx].strip()]))
    if skipped > max(10, len(examples)):
        expected = f"tab-separated {spec.folder} rows with columns {spec.text_columns} and label {spec.label_column!r}"
        raise DatasetFormatError(path, expected, f"{skipped} of {skipped + len(examples)} rows are malformed")
    return examples, skipped


def read_glue(name: str, split: str, root: str | Path | None = None) -> list[TextExample]:
    """Examples of GLUE task ``name`` (e.g. ``glue-sst2``) for ``split`` ('train' or 'val')."""
    spec = GLUE_TASKS[name]
    examples, _ = read_glue_tsv(spec, find_task_file(spec, split, root))
    return examples


def multiclass_metrics(preds: torch.Tensor, labels: torch.Tensor, extra: Sequence[str]) -> dict[str, float]:
    """Accuracy (%), and on request binary F1 of class 1 (%) and Matthews correlation (x100), as GLUE reports them."""
    metrics = {"accuracy": 100.0 * float((preds == labels).float().mean())}
    tp = float(((preds == 1) & (labels == 1)).sum())
    fp = float(((preds == 1) & (labels == 0)).sum())
    fn = float(((preds == 0) & (labels == 1)).sum())
    tn = float(((preds == 0) & (labels == 0)).sum())
    if "f1" in extra:
        metrics["f1"] = 100.0 * (2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    if "mcc" in extra:
        denom = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
        metrics["mcc"] = 100.0 * ((tp * tn - fp * fn) / denom if denom > 0 else 0.0)
    return metrics
