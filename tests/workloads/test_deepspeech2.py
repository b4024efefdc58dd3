"""DeepSpeech2: LibriSpeech-layout reader, features, CTC decoding, WER/CER, model shapes, masking and size."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.meters.flops import count_flops
from workloads.data.errors import DatasetFormatError, DatasetNotFoundError
from workloads.data.speech import (
    LABELS,
    SpeechSet,
    _synthesize,
    digit_texts,
    find_split_dirs,
    load_audio,
    read_librispeech_dir,
    speech_collate,
    text_to_labels,
)
from workloads.deepspeech2 import DeepSpeech2, DeepSpeech2Workload, edit_distance, error_rates, greedy_decode


def _write_wav(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(pcm.tobytes())


def _tree(root: Path) -> Path:
    split = root / "LibriSpeech" / "dev-clean"
    for speaker, chapter, texts in ((19, 198, ["HELLO WORLD", "IT'S ME"]), (26, 495, ["ONE TWO"])):
        folder = split / str(speaker) / str(chapter)
        folder.mkdir(parents=True)
        lines = []
        for i, text in enumerate(texts):
            utt = f"{speaker}-{chapter}-{i:04d}"
            _write_wav(folder / f"{utt}.wav", 0.5 + 0.25 * i, rate=8000 if speaker == 26 else 16000)
            lines.append(f"{utt} {text}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return split


def test_librispeech_layout_reader_and_features(tmp_path: Path) -> None:
    split = _tree(tmp_path)
    utts = read_librispeech_dir(split)
    assert [u.transcript for u in utts] == ["HELLO WORLD", "IT'S ME", "ONE TWO"]
    assert utts[0].audio.name == "19-198-0000.wav"
    assert find_split_dirs("librispeech-clean-100", tmp_path, ("dev-clean",), "x") == [split]
    data = SpeechSet(utts)
    features, labels = data[0]
    assert features.shape == (161, 8000 // 160 + 1)  # 0.5 s at 16 kHz, centred STFT frames
    assert abs(float(features.mean())) < 1e-4 and float(features.std()) == pytest.approx(1.0, rel=1e-3)
    assert labels.tolist() == text_to_labels("HELLO WORLD") and data.transcript(1) == "IT'S ME"
    assert load_audio(utts[2].audio).shape[0] == 16000 // 2  # 0.5 s at 8 kHz resampled to 16 kHz


def test_reader_errors(tmp_path: Path) -> None:
    split = _tree(tmp_path)
    (split / "19" / "198" / "19-198-0000.wav").unlink()
    with pytest.raises(DatasetFormatError, match="no 19-198-0000"):
        read_librispeech_dir(split)
    with pytest.raises(DatasetNotFoundError, match="train-clean-100"):
        find_split_dirs("librispeech-clean-100", tmp_path, ("train-clean-100",), "download it")


def test_collate_pads_and_concatenates_targets() -> None:
    items = [(torch.ones(161, 5), torch.tensor([3, 4])), (torch.ones(161, 3), torch.tensor([5]))]
    features, lengths, targets, target_lengths = speech_collate(items)
    assert features.shape == (2, 1, 161, 5) and float(features[1, 0, :, 3:].abs().sum()) == 0.0
    assert lengths.tolist() == [5, 3] and targets.tolist() == [3, 4, 5] and target_lengths.tolist() == [2, 1]


def test_greedy_ctc_decoding_merges_repeats_and_drops_blanks() -> None:
    a, b, blank = LABELS.index("A"), LABELS.index("B"), 0
    path = [a, a, blank, a, b, b, blank, b]
    logits = torch.nn.functional.one_hot(torch.tensor([path, path]), len(LABELS)).float()
    assert greedy_decode(logits, torch.tensor([8, 4])) == ["AABB", "AA"]


def test_edit_distance_and_error_rates_hand_cases() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1 and edit_distance(["a", "b"], ["a", "b"]) == 0
    rates = error_rates(["ONE TWO THREE", "FOUR"], ["ONE TOO THREE", ""])
    # words: 1 substitution + 1 deletion over 4 words; chars (no spaces): 1 + 4 over 11 + 4 characters
    assert rates["wer"] == pytest.approx(100 * 2 / 4)
    assert rates["cer"] == pytest.approx(100 * 5 / 15)


def test_forward_shapes_and_padding_invariance() -> None:
    torch.manual_seed(0)
    model = DeepSpeech2(conv_channels=4, hidden_size=16, hidden_layers=2).eval()
    features = torch.randn(2, 1, 161, 100)
    features[1, :, :, 60:] = 0.0
    lengths = torch.tensor([100, 60])
    assert model.output_lengths(lengths).tolist() == [50, 30]  # floor((T + 10 - 11) / 2) + 1, then stride 1
    with torch.no_grad():
        batched = model(features, lengths)
        alone = model(features[1:, :, :, :60], lengths[1:])
    assert batched.shape == (2, 50, len(LABELS)) and alone.shape == (1, 30, len(LABELS))
    assert torch.allclose(batched[1, :30], alone[0], atol=1e-5)


def test_paper_size_hand_counted() -> None:
    model = DeepSpeech2()  # 32 conv channels, 5 x 800 bidirectional GRU, 161 bins -> 41 x 32 = 1312 GRU inputs
    conv = (32 * 41 * 11 + 32) + (32 * 32 * 21 * 11 + 32) + 2 * 2 * 32
    gru1 = 2 * (3 * 800 * (1312 + 800) + 2 * 3 * 800)
    gru_rest = 4 * (2 * 800 + 2 * (3 * 800 * 1600 + 2 * 3 * 800))
    head = 2 * 800 + 800 * 29
    assert sum(p.numel() for p in model.parameters()) == conv + gru1 + gru_rest + head == 41_187_968


def test_flops_count_gru_layers() -> None:
    torch.manual_seed(0)
    c, h, t = 4, 16, 40
    model = DeepSpeech2(conv_channels=c, hidden_size=h, hidden_layers=2)
    result = count_flops(model, (torch.randn(1, 1, 161, t), torch.tensor([t])))
    t1 = (t + 10 - 11) // 2 + 1
    macs = c * 41 * 11 * 81 * t1 + c * c * 21 * 11 * 41 * t1  # the two convolutions
    macs += t1 * 2 * 3 * h * ((c * 41 + h) + (h + h))  # two bidirectional GRU layers, 3 gates
    macs += t1 * h * len(LABELS)  # output layer
    assert result["heavy_unsupported_ops"] == [] and result["flops"] == 2 * macs


def test_loss_is_finite_and_trains() -> None:
    torch.manual_seed(0)
    workload = DeepSpeech2Workload("tiny")
    model = DeepSpeech2(conv_channels=4, hidden_size=16, hidden_layers=1)
    items = [(torch.randn(161, 80), torch.tensor(text_to_labels("ONE"))) for _ in range(2)]
    batch = speech_collate(items)
    loss = workload.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.fc.weight.grad is not None and float(model.fc.weight.grad.abs().sum()) > 0


def test_digit_texts_are_disjoint_and_deterministic() -> None:
    texts = digit_texts()
    assert texts == digit_texts() and len(texts["train"]) == 432 and len(texts["val"]) == 90
    assert not set(texts["train"]) & set(texts["val"])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_espeak_synthesis_writes_16khz_wav(tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    _synthesize("one two", "en-us", 160, out, tmp_path)
    with wave.open(str(out)) as fh:
        assert fh.getframerate() == 16000 and fh.getsampwidth() == 2 and fh.getnframes() > 8000


def test_workload_on_librispeech_tree_has_fixed_example_shape_and_evaluates(tmp_path: Path) -> None:
    _tree(tmp_path)
    shutil.copytree(tmp_path / "LibriSpeech" / "dev-clean", tmp_path / "LibriSpeech" / "train-clean-100")
    options = {"conv_channels": 2, "hidden_size": 8, "hidden_layers": 1}
    workload = DeepSpeech2Workload("tiny", dataset="librispeech-clean-100", data_root=str(tmp_path), options=options)
    assert workload.describe()["architecture"] == {**options, "bidirectional": True}
    model = workload.build_model()
    features, lengths = workload.example_inputs(2)
    assert features.shape == (2, 1, 161, 1600) and lengths.tolist() == [51, 76]  # 0.5 s and 0.75 s of audio
    assert model(features, lengths).shape == (2, 800, len(LABELS))
    metrics = workload.evaluate(model, workload.dataloader("val", shuffle=False), "cpu")
    assert metrics["samples"] == 3 and 0.0 <= metrics["cer"] and metrics["wer"] >= 0.0
