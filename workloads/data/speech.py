"""Speech-recognition data: the LibriSpeech layout, log-spectrogram features and a synthesized spoken-digits set.

LibriSpeech (Panayotov et al. 2015) layout: ``<root>/LibriSpeech/<split>/<speaker>/<chapter>/`` holding
``<speaker>-<chapter>.trans.txt`` (one ``<utterance-id> <TRANSCRIPT>`` per line) and one ``<utterance-id>.flac``
(or ``.wav``) per utterance. FLAC is read with the ``soundfile`` package (libsndfile); WAV with the standard
``wave`` module (PCM 8/16/32-bit). Audio at another rate is resampled to the feature rate (polyphase, scipy).

Features follow DeepSpeech2 (1512.02595 §3) as reimplemented by SeanNaren/deepspeech.pytorch ``loader.py``: the
magnitude STFT with a 20 ms Hamming window and 10 ms hop (``n_fft`` = 320 at 16 kHz, so 161 frequency bins),
``log(1 + |X|)``, normalised per utterance to zero mean and unit variance.

``espeak-digits`` is the embedded default: spoken digit strings synthesized offline with Debian's ``espeak-ng`` in
six voices at three speeds, written once into a cache directory in the LibriSpeech layout (16 kHz, 16-bit WAV) and
then read by the same reader. Validation utterances use digit strings that never occur in training.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError

LABELS = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "  # index 0 is the CTC blank (deepspeech.pytorch's English labels)
SAMPLE_RATE = 16000
WINDOW_S, HOP_S = 0.02, 0.01
TRANS_FORMAT = "<speaker>-<chapter>.trans.txt with lines '<speaker>-<chapter>-<utt> TRANSCRIPT'"


@dataclass(frozen=True)
class Utterance:
    audio: Path
    transcript: str


def text_to_labels(text: str) -> list[int]:
    """Character indices in ``LABELS`` (upper-cased; characters outside the alphabet are dropped)."""
    index = {c: i for i, c in enumerate(LABELS)}
    return [index[c] for c in text.upper() if c in index and c != LABELS[0]]


def labels_to_text(labels: Sequence[int]) -> str:
    return "".join(LABELS[i] for i in labels)


# ---- LibriSpeech layout ---------------------------------------------------------------------------------------------
def read_librispeech_dir(split_dir: str | Path) -> list[Utterance]:
    """All utterances under one split directory (``<split>/<speaker>/<chapter>/``), in sorted order."""
    split_dir = Path(split_dir)
    utterances: list[Utterance] = []
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        for line_no, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not text:
                raise DatasetFormatError(trans, TRANS_FORMAT, f"line {line_no} has no transcript")
            audio = next(
                (
                    trans.parent / f"{utt_id}{ext}"
                    for ext in (".flac", ".wav")
                    if (trans.parent / f"{utt_id}{ext}").is_file()
                ),
                None,
            )
            if audio is None:
                raise DatasetFormatError(trans, TRANS_FORMAT, f"no {utt_id}.flac or {utt_id}.wav beside it")
            utterances.append(Utterance(audio, text.strip()))
    return utterances


def find_split_dirs(name: str, root: str | Path | None, splits: Sequence[str], how_to_get: str) -> list[Path]:
    """The existing ``LibriSpeech/<split>`` directories among ``splits`` (at least one), else an error."""
    bases = [Path(root) / "LibriSpeech", Path(root)] if root else []
    for base in bases:
        found = [base / s for s in splits if (base / s).is_dir()]
        if found:
            return found
    searched = [b / s for b in bases for s in splits] or [f"<--data-root>/LibriSpeech/{s}" for s in splits]
    raise DatasetNotFoundError(name, searched, how_to_get)


# ---- audio and features ---------------------------------------------------------------------------------------------
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a PCM WAV file (channels are averaged)."""
    with wave.open(str(path), "rb") as fh:
        width, channels, rate = fh.getsampwidth(), fh.getnchannels(), fh.getframerate()
        raw = fh.readframes(fh.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        data = np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    else:
        raise DatasetFormatError(path, "PCM WAV with 8, 16 or 32-bit samples", f"{8 * width}-bit samples")
    return data.reshape(-1, channels).mean(axis=1), rate


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Mono float32 waveform at ``sample_rate`` from a .wav or .flac file."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        data, rate = read_wav(path)
    else:
        try:
            import soundfile
        except ImportError as exc:
            raise RuntimeError(
                f"Reading {path.suffix} audio needs the soundfile package: pip install soundfile"
            ) from exc
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        data = data.mean(axis=1)
    if rate != sample_rate:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(rate, sample_rate)
        data = resample_poly(data, sample_rate // g, rate // g).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))


def log_spectrogram(audio: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Normalised ``log(1 + |STFT|)`` of shape [n_fft // 2 + 1, frames] (161 bins at 16 kHz; DS2 §3 input)."""
    n_fft = int(sample_rate * WINDOW_S)
    hop = int(sample_rate * HOP_S)
    window = torch.hamming_window(n_fft)
    spec = torch.stft(audio, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window, return_complex=True)
    spec = torch.log1p(spec.abs())
    return (spec - spec.mean()) / spec.std().clamp_min(1e-5)


class SpeechSet(Dataset):
    """Utterances as ``(features [F, T], labels [L])``; features are cached in memory when ``cache`` is set."""

    def __init__(self, utterances: Sequence[Utterance], sample_rate: int = SAMPLE_RATE, cache: bool = False) -> None:
        self.utterances = list(utterances)
        self.sample_rate = sample_rate
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        utt = self.utterances[index]
        item = (
            log_spectrogram(load_audio(utt.audio, self.sample_rate), self.sample_rate),
            torch.tensor(text_to_labels(utt.transcript), dtype=torch.long),
        )
        if self._cache is not None:
            self._cache[index] = item
        return item

    def transcript(self, index: int) -> str:
        return labels_to_text(text_to_labels(self.utterances[index].transcript))


def speech_collate(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """``(features [N, 1, F, T_max], lengths [N], targets [sum L], target_lengths [N])`` (zero-padded in time)."""
    lengths = torch.tensor([f.shape[1] for f, _ in items], dtype=torch.long)
    features = torch.zeros(len(items), 1, items[0][0].shape[0], int(lengths.max()))
    for row, (feat, _) in enumerate(items):
        features[row, 0, :, : feat.shape[1]] = feat
    targets = torch.cat([t for _, t in items])
    target_lengths = torch.tensor([len(t) for _, t in items], dtype=torch.long)
    return features, lengths, targets, target_lengths


# ---- espeak-ng synthesized digits -----------------------------------------------------------------------------------
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_VOICES = ("en-us", "en-us+f3", "en-gb", "en-gb+f2", "en-gb-scotland", "en-029+m3")
ESPEAK_SPEEDS = (130, 160, 190)  # words per minute
ESPEAK_PER_VOICE_SPEED = {"train": 24, "val": 5}  # 6 voices x 3 speeds x (24 + 5) = 522 utterances
ESPEAK_VERSION = "v1"  # bump when the generation recipe changes: the cache folder name includes it


def espeak_cache_dir(data_root: str | Path | None) -> Path:
    """``<data-root>/espeak-digits-v1`` or ``$XDG_CACHE_HOME/compression-bench/espeak-digits-v1``."""
    if data_root:
        return Path(data_root) / f"espeak-digits-{ESPEAK_VERSION}"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "compression-bench" / f"espeak-digits-{ESPEAK_VERSION}"


def digit_texts(seed: int = 0) -> dict[str, list[str]]:
    """Distinct digit strings (2-4 words) per split; validation strings never occur in training."""
    rng = random.Random(seed)
    n = {s: c * len(ESPEAK_VOICES) * len(ESPEAK_SPEEDS) for s, c in ESPEAK_PER_VOICE_SPEED.items()}
    seen: set[str] = set()
    texts: dict[str, list[str]] = {"train": [], "val": []}
    for split in ("val", "train"):
        while len(texts[split]) < n[split]:
            text = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(2, 4)))
            if text not in seen:
                seen.add(text)
                texts[split].append(text)
    return texts


def _synthesize(text: str, voice: str, speed: int, out: Path, tmp: Path) -> None:
    raw = tmp / "raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True, capture_output=True)
    audio = load_audio(raw, SAMPLE_RATE).numpy()
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    with wave.open(str(out), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SAMPLE_RATE)
        fh.writeframes(pcm.tobytes())


def generate_espeak_digits(target: Path) -> Path:
    """Synthesize the set into ``target`` (LibriSpeech layout; speaker = voice, chapter = speed). Atomic."""
    if shutil.which("espeak-ng") is None:
        raise DatasetNotFoundError(
            "espeak-digits",
            [target],
            "the set is synthesized on first use with espeak-ng: apt-get install -y espeak-ng",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for split, texts in digit_texts().items():
            per = ESPEAK_PER_VOICE_SPEED[split]
            for v, voice in enumerate(ESPEAK_VOICES):
                for s, speed in enumerate(ESPEAK_SPEEDS):
                    chapter = work / "LibriSpeech" / split / str(v + 1) / str(s + 1)
                    chapter.mkdir(parents=True)
                    chunk = texts[(v * len(ESPEAK_SPEEDS) + s) * per : (v * len(ESPEAK_SPEEDS) + s + 1) * per]
                    lines = []
                    for u, text in enumerate(chunk):
                        utt_id = f"{v + 1}-{s + 1}-{u:04d}"
                        _synthesize(text, voice, speed, chapter / f"{utt_id}.wav", work)
                        lines.append(f"{utt_id} {text.upper()}\n")
                    (chapter / f"{v + 1}-{s + 1}.trans.txt").write_text("".join(lines), encoding="utf-8")
        (work / "raw.wav").unlink(missing_ok=True)
        version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
        (work / "SOURCE.txt").write_text(f"generated by workloads/data/speech.py {ESPEAK_VERSION}; {version}\n")
        try:
            os.replace(work, target)
        except OSError:
            if not target.is_dir():  # another process finished first: its copy is identical
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def read_espeak_digits(split: str, root: str | Path | None = None) -> list[Utterance]:
    """The ``train`` or ``val`` utterances, synthesizing the cache on first use."""
    target = espeak_cache_dir(root)
    if not (target / "SOURCE.txt").is_file():
        print(f"[espeak-digits] synthesizing the spoken-digits set into {target} (once)", flush=True)
        generate_espeak_digits(target)
    return read_librispeech_dir(target / "LibriSpeech" / split)
