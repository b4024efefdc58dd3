"""``fortunes-topics``: topic classification of the fortune-cookie entries shipped by Debian's ``fortunes`` package.

Each fortune file in ``/usr/share/games/fortunes`` (files without an extension; entries separated by lines holding a
single ``%``) is one topic. Eight clearly distinct topics are used: computers, science, politics, food, love,
medicine, sports, law (about 3,150 entries). An entry's label is the file it comes from.

Cleaning: whitespace is collapsed; empty entries are dropped; an entry text that occurs in more than one topic is
dropped (its label would be ambiguous), and repeats inside one topic are kept once, so no text is in both splits.
Split: per topic, a permutation seeded with ``SPLIT_SEED`` sends 20 % of the entries to ``val`` and the rest to
``train`` (stratified, deterministic, independent of the machine's file order because entries are sorted first).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError
from workloads.data.glue import TextExample

FORTUNES_DIR = Path("/usr/share/games/fortunes")
TOPICS = ("computers", "science", "politics", "food", "love", "medicine", "sports", "law")
SPLIT_SEED = 0
VAL_FRACTION = 0.2
HOW_TO_GET = "apt-get install -y fortunes (installs the fortune files in /usr/share/games/fortunes)"
_SEPARATOR = re.compile(r"^%\s*$", flags=re.MULTILINE)


def parse_fortune_file(path: str | Path) -> list[str]:
    """Entries of one fortune file (the strfile source format: entries separated by ``%`` lines)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    entries = [" ".join(chunk.split()) for chunk in _SEPARATOR.split(text)]
    return [entry for entry in entries if entry]


def _find_dir(root: str | Path | None) -> Path:
    candidates = ([Path(root) / "fortunes", Path(root)] if root else []) + [FORTUNES_DIR]
    for directory in candidates:
        if all((directory / topic).is_file() for topic in TOPICS):
            return directory
    raise DatasetNotFoundError("fortunes-topics", [c / topic for c in candidates for topic in TOPICS[:1]], HOW_TO_GET)


def topic_entries(root: str | Path | None = None) -> dict[str, list[str]]:
    """Unique entries per topic, sorted, with texts that occur under several topics removed."""
    directory = _find_dir(root)
    per_topic = {topic: set(parse_fortune_file(directory / topic)) for topic in TOPICS}
    seen: dict[str, int] = defaultdict(int)
    for entries in per_topic.values():
        for entry in entries:
            seen[entry] += 1
    cleaned = {topic: sorted(e for e in entries if seen[e] == 1) for topic, entries in per_topic.items()}
    for topic, entries in cleaned.items():
        if not entries:
            raise DatasetFormatError(directory / topic, "fortune entries separated by '%' lines", "no entries found")
    return cleaned


def read_fortunes_topics(split: str, root: str | Path | None = None) -> list[TextExample]:
    """The ``train`` or ``val`` split as single-sentence examples labelled by topic index (order of ``TOPICS``)."""
    if split not in ("train", "val"):
        raise ValueError(f"Unknown split {split!r}; use 'train' or 'val'")
    examples: list[TextExample] = []
    for label, (topic, entries) in enumerate(topic_entries(root).items()):
        order = list(range(len(entries)))
        random.Random(f"{SPLIT_SEED}-{topic}").shuffle(order)
        n_val = max(1, round(VAL_FRACTION * len(entries)))
        chosen = order[:n_val] if split == "val" else order[n_val:]
        examples.extend(TextExample(entries[i], None, label) for i in sorted(chosen))
    return examples
