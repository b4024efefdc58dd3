"""Language-modelling corpora in their real on-disk formats, the vocabulary, and standard LM batching.

Readers (``level`` is ``"word"`` or ``"char"``; every reader returns a :class:`TextCorpus` of token lists):

* ``ptb``: Mikolov's Penn Treebank files (``simple-examples/data``): ``ptb.{train,valid,test}.txt``, one sentence
  per line, words separated by spaces, rare words already ``<unk>``. Word level adds ``<eos>`` per line (as Zaremba
  et al. 2014 and PyTorch's word_language_model do). Char level reads ``ptb.char.*.txt`` (one character per token,
  ``_`` between words) or, where those are absent, the characters of the word files with spaces written ``_`` (the
  ``ptb.char`` convention); ``<eos>`` ends every line.
* ``wikitext2``: ``wiki.{train,valid,test}.tokens`` of WikiText-2 (Merity et al. 2016); every line, empty ones
  included, gets ``<eos>`` as in the AWD-LSTM reader; char level as for the PTB word files.
* ``text8``: Mahoney's single ``text8`` file (lowercase a-z and spaces); split 90 % / 5 % / 5 % of the characters,
  which on the real 100,000,000-character file is the standard 90M/5M/5M split.
* ``fortunes`` (the embedded default): the English text of Debian's ``fortunes`` package
  (``/usr/share/games/fortunes``, or ``--data-root``/fortunes): topic files without extension, entries separated by
  lines holding only ``%``; ``.dat``/``.u8`` files, sub-folders and the non-text ``ascii-art`` file are skipped,
  terminal overstrikes (``x<BS>x``) removed, duplicates dropped. Entry ``e`` goes to val when
  ``crc32(e) % 10 == 0`` (deterministic, independent of file order). Word tokens are lower-cased words and single
  punctuation marks; ``<eos>`` ends every line.

The vocabulary (:class:`Vocab`) is built from the train split only: tokens seen at least ``min_count`` times, the
``max_size`` most frequent kept (ties broken alphabetically), everything else ``<unk>``.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError

UNK, EOS = "<unk>", "<eos>"
FORTUNES_SYSTEM_DIR = Path("/usr/share/games/fortunes")
FORTUNES_SKIP = frozenset({"ascii-art"})  # drawings, not English text
FORTUNES_VAL_EVERY = 10  # crc32(entry) % 10 == 0 -> val
TEXT8_FRACTIONS = (0.9, 0.05, 0.05)
SPLIT_FILES = {
    "ptb": ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    "ptb-char": ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"),
    "wikitext2": ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
}
HOW_TO_GET = {
    "ptb": "download http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz and extract it; the files are in "
    "simple-examples/data (give that folder, or its parent, as --data-root)",
    "wikitext2": "download wikitext-2-v1.zip (Salesforce WikiText, Merity et al. 2016) and extract it under "
    "--data-root",
    "text8": "download http://mattmahoney.net/dc/text8.zip and unzip it into --data-root",
    "fortunes": "apt-get install -y fortunes (Debian/Ubuntu), or copy the fortune files to --data-root/fortunes",
}
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_OVERSTRIKE_RE = re.compile(".\x08")


@dataclass
class TextCorpus:
    """Token lists of one corpus at one level, with the files they came from."""

    name: str
    level: str
    train: list[str]
    val: list[str]
    test: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    split_rule: str = ""


class Vocab:
    """Token <-> id map. Ids 0.. are ``specials`` then tokens by descending train frequency."""

    def __init__(self, itos: Sequence[str]) -> None:
        self.itos = list(itos)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if UNK not in self.stoi:
            raise ValueError(f"vocabulary must contain {UNK}")
        self.unk_id = self.stoi[UNK]

    @classmethod
    def build(cls, tokens: Sequence[str], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Vocabulary of ``tokens`` (train split): count >= ``min_count``, at most ``max_size`` entries in all."""
        counts = Counter(tokens)
        specials = [UNK] + ([EOS] if EOS in counts else [])
        kept = (t for t, c in counts.items() if c >= min_count and t not in specials)
        ranked = sorted(kept, key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(max_size - len(specials), 0)]
        return cls(specials + ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> torch.Tensor:
        get, unk = self.stoi.get, self.unk_id
        return torch.tensor([get(t, unk) for t in tokens], dtype=torch.long)


def unigram_cross_entropy(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on ``val_ids`` of the add-one-smoothed unigram model of ``train_ids``."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    log_p = counts.log() - math.log(float(counts.sum()))
    return float(-log_p[val_ids].mean())


# ---- batching ----------------------------------------------------------------------------------------------------
def batchify(ids: torch.Tensor, streams: int) -> torch.Tensor:
    """Cut the token stream into ``streams`` contiguous rows [streams, L] (the remainder is dropped)."""
    length = ids.numel() // streams
    if length < 2:
        raise ValueError(f"{ids.numel()} tokens are too few for {streams} streams of at least 2 tokens")
    return ids[: streams * length].view(streams, length).contiguous()


class LMWindows(Dataset):
    """BPTT windows over batchified streams: item ``i`` is ``(inputs [B, T], targets [B, T], first)``.

    ``targets`` are ``inputs`` shifted by one token; ``first`` (a 0-dim bool tensor) is True for window 0, where
    the carried hidden state must be reset. The last window may be shorter than ``bptt``.
    """

    def __init__(self, streams: torch.Tensor, bptt: int) -> None:
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        self.streams = streams
        self.bptt = bptt

    def __len__(self) -> int:
        return math.ceil((self.streams.shape[1] - 1) / self.bptt)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.bptt
        length = min(self.bptt, self.streams.shape[1] - 1 - start)
        inputs = self.streams[:, start : start + length]
        targets = self.streams[:, start + 1 : start + 1 + length]
        return inputs, targets, torch.tensor(index == 0)


# ---- file helpers ------------------------------------------------------------------------------------------------
def _read_text(path: Path, expected: str, fallback_latin1: bool = False) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise DatasetFormatError(path, expected, "binary content (NUL bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fallback_latin1:
            return raw.decode("latin-1")
        raise DatasetFormatError(path, expected, f"not UTF-8 text ({exc})") from exc


def _candidates(root: str | None, subdirs: Sequence[str]) -> list[Path]:
    if root is None:
        return []
    base = Path(root).expanduser()
    return [base] + [base / sub for sub in subdirs]


def _find_dir(dataset: str, dirs: Sequence[Path], names: Sequence[str]) -> Path:
    for folder in dirs:
        if all((folder / name).is_file() for name in names):
            return folder
    searched = [folder / name for folder in dirs for name in names] or [f"<--data-root>/{n}" for n in names]
    raise DatasetNotFoundError(dataset, searched, HOW_TO_GET[dataset])


def _line_tokens(text: str, path: Path, level: str, expected: str) -> list[str]:
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DatasetFormatError(path, expected, "no text (file is empty)")
    out: list[str] = []
    for line in lines:
        if level == "word":
            out.extend(line.split())
        else:
            out.extend(line.strip().replace(" ", "_"))
        out.append(EOS)
    return out


# ---- PTB and WikiText-2 ------------------------------------------------------------------------------------------
PTB_EXPECTED = "Mikolov PTB text: one sentence per line, space-separated tokens, rare words as <unk>"
PTB_CHAR_EXPECTED = "ptb.char text: one sentence per line, single characters separated by spaces, '_' between words"


def read_ptb(root: str | None, level: str = "word") -> TextCorpus:
    """Penn Treebank (Mikolov's preprocessing) at word or character level."""
    dirs = _candidates(root, ("ptb", "penn", "simple-examples/data", "data"))
    if level == "char":
        char_dir = next((d for d in dirs if all((d / n).is_file() for n in SPLIT_FILES["ptb-char"])), None)
        if char_dir is not None:
            return _read_ptb_char(char_dir)
    folder = _find_dir("ptb", dirs, SPLIT_FILES["ptb"])
    paths = [folder / name for name in SPLIT_FILES["ptb"]]
    splits = []
    for path in paths:
        text = _read_text(path, PTB_EXPECTED)
        if "\t" in text[:100000]:
            raise DatasetFormatError(path, PTB_EXPECTED, "tab characters found")
        splits.append(_line_tokens(text, path, level, PTB_EXPECTED))
    rule = "official ptb.train/valid/test" + ("; chars of the word files, ' ' -> '_'" if level == "char" else "")
    return TextCorpus("ptb", level, *splits, files=[str(p) for p in paths], split_rule=rule)


def _read_ptb_char(folder: Path) -> TextCorpus:
    paths = [folder / name for name in SPLIT_FILES["ptb-char"]]
    splits = []
    for path in paths:
        tokens = _line_tokens(_read_text(path, PTB_CHAR_EXPECTED), path, "word", PTB_CHAR_EXPECTED)
        long = sum(1 for t in tokens if len(t) > 1 and t != EOS)
        if long > 0.01 * len(tokens):
            problem = f"{long} of {len(tokens)} tokens are not single characters"
            raise DatasetFormatError(path, PTB_CHAR_EXPECTED, problem)
        splits.append(tokens)
    return TextCorpus("ptb", "char", *splits, files=[str(p) for p in paths], split_rule="official ptb.char.* files")


WIKITEXT_EXPECTED = "WikiText .tokens: tokenised text, one paragraph per line, ' = Title = ' headings, <unk> for rare"


def read_wikitext2(root: str | None, level: str = "word") -> TextCorpus:
    """WikiText-2 (raw token files, not the -raw variant's untokenised text)."""
    dirs = _candidates(root, ("wikitext-2", "wikitext2", "wikitext-2-v1"))
    folder = _find_dir("wikitext2", dirs, SPLIT_FILES["wikitext2"])
    paths = [folder / name for name in SPLIT_FILES["wikitext2"]]
    splits = [_line_tokens(_read_text(p, WIKITEXT_EXPECTED), p, level, WIKITEXT_EXPECTED) for p in paths]
    return TextCorpus("wikitext2", level, *splits, files=[str(p) for p in paths], split_rule="official wiki.*.tokens")


# ---- text8 -------------------------------------------------------------------------------------------------------
TEXT8_EXPECTED = "text8: one line of lowercase letters a-z separated by single spaces"


def read_text8(root: str | None, level: str = "char") -> TextCorpus:
    """text8 split 90/5/5 by characters (the standard 90M/5M/5M split on the real file)."""
    dirs = _candidates(root, ("text8",))
    path = _find_dir("text8", dirs, ("text8",)) / "text8"
    text = _read_text(path, TEXT8_EXPECTED)
    bad = set(text[:1_000_000]) - set("abcdefghijklmnopqrstuvwxyz ")
    if bad or not text.strip():
        raise DatasetFormatError(path, TEXT8_EXPECTED, f"unexpected characters {sorted(bad)[:10]}" if bad else "empty")
    n_train, n_val = int(len(text) * TEXT8_FRACTIONS[0]), int(len(text) * TEXT8_FRACTIONS[1])
    parts = (text[:n_train], text[n_train : n_train + n_val], text[n_train + n_val :])
    splits = [part.split() if level == "word" else list(part) for part in parts]
    rule = f"characters [0, {n_train}), [{n_train}, {n_train + n_val}), [{n_train + n_val}, {len(text)})"
    return TextCorpus("text8", level, *splits, files=[str(path)], split_rule=rule)


# ---- fortunes ----------------------------------------------------------------------------------------------------
FORTUNES_EXPECTED = "fortune(6) text file: entries separated by lines containing only '%'"


def fortune_files(root: str | None) -> list[Path]:
    """The topic files of the first folder that has any: ``root/fortunes``, then the Debian system folder."""
    dirs = [Path(root).expanduser() / "fortunes"] if root else []
    dirs.append(FORTUNES_SYSTEM_DIR)
    for folder in dirs:
        if folder.is_dir():
            files = sorted(
                p
                for p in folder.iterdir()
                if p.is_file() and not p.is_symlink() and "." not in p.name and p.name not in FORTUNES_SKIP
            )
            if files:
                return files
    raise DatasetNotFoundError("fortunes", [d / "<topic files>" for d in dirs], HOW_TO_GET["fortunes"])


def fortune_entries(path: Path) -> list[str]:
    """Entries of one fortune file (overstrikes removed, blank entries dropped)."""
    text = _read_text(path, FORTUNES_EXPECTED, fallback_latin1=True)
    lines = text.splitlines()
    if "%" not in (line.rstrip() for line in lines) and len(lines) > 50:
        raise DatasetFormatError(path, FORTUNES_EXPECTED, "no '%' separator line in a file of more than 50 lines")
    entries, current = [], []
    for line in lines + ["%"]:
        if line.rstrip() == "%":
            entry = _OVERSTRIKE_RE.sub("", "\n".join(current)).strip("\n")
            if entry.strip():
                entries.append(entry)
            current = []
        else:
            current.append(line)
    return entries


def fortune_tokens(entry: str, level: str) -> list[str]:
    """Tokens of one entry: lower-cased words and punctuation (word) or characters (char), ``<eos>`` per line."""
    out: list[str] = []
    for line in entry.splitlines():
        line = " ".join(line.split())
        if not line:
            continue
        out.extend(_WORD_RE.findall(line.lower()) if level == "word" else line)
        out.append(EOS)
    return out


def read_fortunes(root: str | None, level: str = "word") -> TextCorpus:
    """Debian ``fortunes``; entry -> val when crc32(entry) % 10 == 0, else train."""
    files = fortune_files(root)
    seen: set[str] = set()
    train: list[str] = []
    val: list[str] = []
    for path in files:
        for entry in fortune_entries(path):
            if entry in seen:
                continue
            seen.add(entry)
            target = val if zlib.crc32(entry.encode("utf-8")) % FORTUNES_VAL_EVERY == 0 else train
            target.extend(fortune_tokens(entry, level))
    if not train or not val:
        raise DatasetFormatError(files[0].parent, FORTUNES_EXPECTED, "too few entries for a train and a val split")
    rule = f"entry -> val if crc32(utf-8 entry) % {FORTUNES_VAL_EVERY} == 0 (duplicates dropped)"
    return TextCorpus("fortunes", level, train, val, files=[str(p) for p in files], split_rule=rule)


@dataclass(frozen=True)
class TextDatasetSpec:
    name: str
    reader: Callable[[str | None, str], TextCorpus]
    levels: tuple[str, ...]
    source: str


TEXT_DATASETS: dict[str, TextDatasetSpec] = {
    "fortunes": TextDatasetSpec("fortunes", read_fortunes, ("word", "char"), "Debian package fortunes (embedded)"),
    "ptb": TextDatasetSpec("ptb", read_ptb, ("word", "char"), "Mikolov simple-examples.tgz (Marcus et al. 1993)"),
    "wikitext2": TextDatasetSpec("wikitext2", read_wikitext2, ("word", "char"), "WikiText-2 (arXiv 1609.07843)"),
    "text8": TextDatasetSpec("text8", read_text8, ("word", "char"), "mattmahoney.net/dc/text8.zip"),
}


def read_corpus(name: str, root: str | None, level: str) -> TextCorpus:
    """Read dataset ``name`` at ``level``; unknown names raise with the valid choices."""
    if name not in TEXT_DATASETS:
        raise ValueError(f"Unknown text dataset {name!r}. Available: {', '.join(sorted(TEXT_DATASETS))}")
    if level not in TEXT_DATASETS[name].levels:
        raise ValueError(f"Dataset {name!r} has no {level!r} level; use one of {TEXT_DATASETS[name].levels}")
    return TEXT_DATASETS[name].reader(root, level)
