"""Text corpus readers on small files in the real formats, the vocabulary and LM batching."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest
import torch

from workloads.data import text
from workloads.data.errors import DatasetFormatError, DatasetNotFoundError
from workloads.data.text import EOS, UNK, LMWindows, Vocab, batchify, read_corpus, unigram_cross_entropy

PTB_LINES = {
    "train": [" aer banknote berlitz <unk> ", " the cat sat on the mat ", " the dog sat "],
    "valid": [" the cat sat ", " a new word "],
    "test": [" the mat "],
}


def _write_ptb(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in PTB_LINES.items():
        (folder / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")


def test_ptb_word_level_adds_eos_per_line(tmp_path: Path) -> None:
    _write_ptb(tmp_path / "simple-examples" / "data")
    corpus = read_corpus("ptb", str(tmp_path), "word")
    assert corpus.train[:5] == ["aer", "banknote", "berlitz", "<unk>", EOS]
    assert corpus.train.count(EOS) == 3
    assert corpus.val == ["the", "cat", "sat", EOS, "a", "new", "word", EOS]
    assert corpus.test == ["the", "mat", EOS]


def test_ptb_char_level_from_word_files_uses_underscores(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    corpus = read_corpus("ptb", str(tmp_path), "char")
    assert corpus.test == ["t", "h", "e", "_", "m", "a", "t", EOS]


def test_ptb_char_files_preferred_and_checked(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.char.{split}.txt").write_text("a _ b c\nd e\n")
    corpus = read_corpus("ptb", str(tmp_path), "char")
    assert corpus.val == ["a", "_", "b", "c", EOS, "d", "e", EOS]
    assert corpus.split_rule == "official ptb.char.* files"
    (tmp_path / "ptb.char.valid.txt").write_text("these are words not characters\n")
    with pytest.raises(DatasetFormatError, match="not single characters"):
        read_corpus("ptb", str(tmp_path), "char")


def test_missing_ptb_names_files_and_source(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        read_corpus("ptb", str(tmp_path), "word")
    message = str(info.value)
    assert "ptb.train.txt" in message and "simple-examples.tgz" in message


def test_malformed_files_raise_format_error(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    (tmp_path / "ptb.valid.txt").write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(DatasetFormatError, match="ptb.valid.txt"):
        read_corpus("ptb", str(tmp_path), "word")
    (tmp_path / "ptb.valid.txt").write_text("\n\n")
    with pytest.raises(DatasetFormatError, match="empty"):
        read_corpus("ptb", str(tmp_path), "word")


def test_wikitext2_keeps_empty_lines_as_eos(tmp_path: Path) -> None:
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"wiki.{split}.tokens").write_text(" \n = Valkyria = \n\n Senjō no <unk> 3 \n")
    corpus = read_corpus("wikitext2", str(tmp_path), "word")
    assert corpus.train == [EOS, "=", "Valkyria", "=", EOS, EOS, "Senjō", "no", "<unk>", "3", EOS]


def test_text8_split_is_90_5_5_by_characters(tmp_path: Path) -> None:
    body = ("anarchism originated as a term " * 20)[:400]
    (tmp_path / "text8").write_text(body)
    corpus = read_corpus("text8", str(tmp_path), "char")
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (360, 20, 20)
    assert "".join(corpus.train + corpus.val + corpus.test) == body
    words = read_corpus("text8", str(tmp_path), "word")
    assert words.train[:3] == ["anarchism", "originated", "as"]
    (tmp_path / "text8").write_text("Not Text8.\n")
    with pytest.raises(DatasetFormatError, match="unexpected characters"):
        read_corpus("text8", str(tmp_path), "char")


FORTUNE_FILE = "First fortune.\n%\nSecond one,\n  with two lines.\n\t-- Someone\n%\nB\bBold\n%\nFirst fortune.\n%\n"


def _write_fortunes(root: Path) -> Path:
    folder = root / "fortunes"
    folder.mkdir(parents=True)
    (folder / "topic").write_text(FORTUNE_FILE)
    (folder / "topic.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    (folder / "topic.u8").symlink_to(folder / "topic")
    (folder / "ascii-art").write_text("  /\\_/\\\n ( o.o )\n%\n")
    extra = "\n%\n".join(f"Entry number {i} says hello." for i in range(40))
    (folder / "more").write_text(extra + "\n")
    return folder


def test_fortune_entries_split_on_percent_and_strip_overstrike(tmp_path: Path) -> None:
    folder = _write_fortunes(tmp_path)
    entries = text.fortune_entries(folder / "topic")
    assert entries == ["First fortune.", "Second one,\n  with two lines.\n\t-- Someone", "Bold", "First fortune."]
    assert text.fortune_tokens(entries[1], "word") == [
        "second",
        "one",
        ",",
        EOS,
        "with",
        "two",
        "lines",
        ".",
        EOS,
        "-",
        "-",
        "someone",
        EOS,
    ]
    assert text.fortune_tokens("Hi  you", "char") == ["H", "i", " ", "y", "o", "u", EOS]


def test_fortunes_reader_skips_index_files_and_splits_by_crc(tmp_path: Path) -> None:
    folder = _write_fortunes(tmp_path)
    assert [p.name for p in text.fortune_files(str(tmp_path))] == ["more", "topic"]
    corpus = read_corpus("fortunes", str(tmp_path), "word")
    entries = text.fortune_entries(folder / "more") + text.fortune_entries(folder / "topic")[:3]
    val_entries = [e for e in entries if zlib.crc32(e.encode()) % 10 == 0]
    assert corpus.val == [tok for e in val_entries for tok in text.fortune_tokens(e, "word")]
    assert corpus.train.count("fortune") == 1  # the duplicate entry is dropped
    assert read_corpus("fortunes", str(tmp_path), "word").train == corpus.train  # deterministic


def test_fortunes_missing_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "FORTUNES_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="apt-get install -y fortunes"):
        read_corpus("fortunes", str(tmp_path), "word")


def test_vocab_min_count_cap_and_ties_are_deterministic() -> None:
    tokens = ["b", "a", "a", "c", "c", "d", EOS, "b", "e", EOS]
    vocab = Vocab.build(tokens, min_count=2)
    assert vocab.itos == [UNK, EOS, "a", "b", "c"]  # counts 2 each: alphabetical
    capped = Vocab.build(tokens, min_count=1, max_size=4)
    assert capped.itos == [UNK, EOS, "a", "b"]
    assert capped.encode(["a", "zzz", "c"]).tolist() == [2, 0, 0]


def test_unigram_cross_entropy_hand_computed() -> None:
    train = torch.tensor([0, 1, 1, 1])  # add-one counts: [2, 4, 1] over 7
    val = torch.tensor([1, 2])
    expected = -(math.log(4 / 7) + math.log(1 / 7)) / 2
    assert unigram_cross_entropy(train, val, 3) == pytest.approx(expected)


def test_batchify_and_windows_shapes_and_targets() -> None:
    ids = torch.arange(23)
    streams = batchify(ids, 4)  # 5 tokens per stream, 3 dropped
    assert streams.tolist()[1] == [5, 6, 7, 8, 9]
    windows = LMWindows(streams, bptt=3)
    assert len(windows) == 2  # 4 targets per stream -> windows of 3 and 1
    x0, y0, first0 = windows[0]
    x1, y1, first1 = windows[1]
    assert x0.shape == (4, 3) and x1.shape == (4, 1)
    assert torch.equal(y0, streams[:, 1:4]) and torch.equal(y1, streams[:, 4:5])
    assert bool(first0) and not bool(first1)
    with pytest.raises(ValueError, match="too few"):
        batchify(torch.arange(3), 4)
