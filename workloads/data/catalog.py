"""The datasets every reader knows, for ``python -m harness ls datasets``."""

from __future__ import annotations

import fnmatch

from workloads.data.images import IMAGE_DATASETS


def dataset_rows(pattern: str | None = None) -> list[tuple]:
    rows: list[tuple] = [("NAME", "TASK", "CLASSES", "SOURCE")]
    for name, spec in sorted(IMAGE_DATASETS.items()):
        if pattern is None or fnmatch.fnmatch(name, pattern):
            rows.append((name, "image-classification", spec.num_classes, spec.source))
    from workloads.data.text import TEXT_DATASETS

    for name, text_spec in sorted(TEXT_DATASETS.items()):
        if pattern is None or fnmatch.fnmatch(name, pattern):
            rows.append((name, "language-modeling", f"vocab ({'/'.join(text_spec.levels)} level)", text_spec.source))
    from workloads.data.fortunes_topics import TOPICS
    from workloads.data.glue import GLUE_TASKS

    classification = [("fortunes-topics", len(TOPICS), "Debian fortunes files, one topic per file (embedded)")]
    classification += [(name, spec.num_classes, f"GLUE {spec.folder} TSV") for name, spec in GLUE_TASKS.items()]
    speech = [
        ("espeak-digits", "29 chars", "spoken digits synthesized once with espeak-ng (embedded)"),
        ("librispeech-clean-100", "29 chars", "LibriSpeech train-clean-100 / dev-clean (flac)"),
        ("librispeech", "29 chars", "LibriSpeech train-* 960 h / dev-clean (flac)"),
    ]
    for name, classes, source in sorted(classification):
        if pattern is None or fnmatch.fnmatch(name, pattern):
            rows.append((name, "text-classification", classes, source))
    for name, classes, source in speech:
        if pattern is None or fnmatch.fnmatch(name, pattern):
            rows.append((name, "speech-recognition", classes, source))
    return rows
