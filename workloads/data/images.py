"""Image-classification dataset readers in their real on-disk formats.

Every reader returns an :class:`ImageSet` whose items are ``(uint8 tensor [C, H, W], label)``. Resizing, channel
expansion and normalisation happen per batch in :func:`image_collate` so that in-memory sets stay small.

Readers: ``digits`` (scikit-learn's bundled 8x8 digits, always available: the embedded default), ``mnist`` and
``fashion-mnist`` (IDX files, optionally gzipped; Fashion-MNIST from Debian's ``dataset-fashion-mnist``),
``cifar10``/``cifar100`` (the python pickle batches) and ``imagenet`` (an ImageFolder tree with train/ and val/).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError
from workloads.data.fine_grained import FINE_GRAINED, NUM_CLASSES
from workloads.data.safe_pickle import UnsafePickleError, load_dataset_pickle

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_SEED = 0  # the deterministic train/val split of datasets that ship without one


@dataclass(frozen=True)
class ImageDatasetSpec:
    name: str
    num_classes: int
    in_channels: int
    native_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    reader: Callable[..., ImageSet]
    source: str


class ImageSet(Dataset):
    """In-memory uint8 images [N, C, H, W] with int64 labels, or a lazily loaded file dataset."""

    def __init__(self, images: torch.Tensor | None, labels: torch.Tensor, loader: Dataset | None = None) -> None:
        self.images = images
        self.labels = labels
        self.loader = loader

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.images is not None:
            return self.images[index], int(self.labels[index])
        return self.loader[index]  # type: ignore[index]

    def subset(self, max_samples: int | None) -> ImageSet:
        """First ``max_samples`` of a seeded permutation: deterministic and class-balanced in expectation."""
        if max_samples is None or max_samples >= len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(SPLIT_SEED))[:max_samples]
        if self.images is not None:
            return ImageSet(self.images[keep], self.labels[keep])
        return ImageSet(None, self.labels[keep], torch.utils.data.Subset(self.loader, keep.tolist()))  # type: ignore[arg-type]


def image_collate(size: int, channels: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    """Collate uint8 images into a normalised float batch at ``size`` x ``size`` with ``channels`` channels."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([item[0] for item in items]).float().div_(255.0)
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if images.shape[1] != channels:
            images = images.expand(-1, channels, -1, -1)
        m = mean_t if mean_t.shape[1] == channels else mean_t.mean().view(1, 1, 1, 1)
        s = std_t if std_t.shape[1] == channels else std_t.mean().view(1, 1, 1, 1)
        labels = torch.tensor([int(item[1]) for item in items], dtype=torch.long)
        return ((images - m) / s).contiguous(), labels

    return collate


# ---- digits (scikit-learn) ------------------------------------------------------------------------------------------
def read_digits(split: str, root: str | None = None, size: int | None = None) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits; a stratified 80/20 split with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    idx_train, idx_val = train_test_split(
        np.arange(len(images)), test_size=0.2, random_state=SPLIT_SEED, stratify=data.target
    )
    idx = idx_train if split == "train" else idx_val
    return ImageSet(torch.from_numpy(images[idx]).unsqueeze(1), torch.from_numpy(data.target[idx]).long())


# ---- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------------------------------
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_EXPECTED = "IDX (big-endian magic 0x00000803 for images / 0x00000801 for labels, optionally gzipped)"


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (the MNIST format): magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (gzip.BadGzipFile, EOFError) as exc:  # a truncated or non-gzip ".gz" file
        raise DatasetFormatError(path, IDX_EXPECTED, f"cannot decompress: {exc}") from exc
    if len(raw) < 8:
        raise DatasetFormatError(path, IDX_EXPECTED, f"file is only {len(raw)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DatasetFormatError(path, IDX_EXPECTED, f"bad magic bytes {raw[:4].hex()}")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    expected = int(np.prod(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != expected:
        raise DatasetFormatError(path, IDX_EXPECTED, f"header says {dims} ({expected} values), found {data.size}")
    return data.reshape(dims)


def _find_idx(name: str, dirs: Sequence[Path], how_to_get: str, split: str) -> tuple[Path, Path]:
    searched: list[Path] = []
    for directory in dirs:
        found = []
        for stem in IDX_FILES[split]:
            candidates = [directory / stem, directory / f"{stem}.gz"]
            searched.extend(candidates)
            found.append(next((c for c in candidates if c.is_file()), None))
        if all(found):
            return found[0], found[1]  # type: ignore[return-value]
    raise DatasetNotFoundError(name, searched, how_to_get)


def _idx_reader(name: str, system_dirs: Sequence[Path], how_to_get: str) -> Callable[..., ImageSet]:
    def reader(split: str, root: str | None = None, size: int | None = None) -> ImageSet:
        dirs = ([Path(root) / name, Path(root)] if root else []) + list(system_dirs)
        image_path, label_path = _find_idx(name, dirs, how_to_get, split)
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            problem = f"images {images.shape} do not match labels {labels.shape}"
            raise DatasetFormatError(image_path, IDX_EXPECTED, problem)
        return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))

    return reader


read_fashion_mnist = _idx_reader(
    "fashion-mnist",
    [FASHION_MNIST_SYSTEM_DIR],
    "apt-get install -y dataset-fashion-mnist (installs the IDX files in /usr/share/datasets/fashion-mnist)",
)
read_mnist = _idx_reader(
    "mnist",
    [Path("/usr/share/datasets/mnist")],
    "place the four MNIST IDX files (e.g. train-images-idx3-ubyte.gz) in DIR/mnist",
)


# ---- CIFAR (python pickle batches) ----------------------------------------------------------------------------------
def _cifar_reader(name: str, folder: str, train_files: list[str], val_files: list[str], label_key: str) -> Callable:
    def reader(split: str, root: str | None = None, size: int | None = None) -> ImageSet:
        dirs = [Path(root) / folder, Path(root) / name / folder] if root else []
        files = train_files if split == "train" else val_files
        for directory in dirs:
            if all((directory / f).is_file() for f in files):
                break
        else:
            raise DatasetNotFoundError(
                name,
                [d / f for d in dirs for f in files] or [f"<--data-root>/{folder}/{files[0]}"],
                f"download the CIFAR 'python version' archive from the CIFAR page and extract it under DIR/{folder}",
            )
        batches = [_read_cifar_batch(directory / f, label_key) for f in files]
        images = np.concatenate([b[0] for b in batches])
        labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
        return ImageSet(torch.from_numpy(images), labels)

    return reader


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: a pickled dict with uint8 'data' [N, 3072] (R, G, B planes) and N labels."""
    expected = f"CIFAR python pickle: dict with 'data' (N x 3072 uint8) and '{label_key}' (N ints)"
    try:
        with open(path, "rb") as fh:
            batch = load_dataset_pickle(fh)
    except UnsafePickleError as exc:
        raise DatasetFormatError(path, expected, f"unsafe pickle, not loaded ({exc})") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise DatasetFormatError(path, expected, f"not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if isinstance(batch, dict):  # pickle.load(encoding="bytes") gives byte-string keys; latin1 gives str keys
        batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetFormatError(path, expected, f"keys missing (found {found})")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DatasetFormatError(path, expected, f"'data' has shape {data.shape} for {labels.shape[0]} labels")
    return data.reshape(-1, 3, 32, 32), labels


read_cifar10 = _cifar_reader(
    "cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"
)
read_cifar100 = _cifar_reader("cifar100", "cifar-100-python", ["train"], ["test"], "fine_labels")


# ---- ImageNet (ImageFolder) ----------------------------------------------------------------------------------------
class _FolderImages(Dataset):
    def __init__(self, folder: object, size: int) -> None:
        from torchvision import transforms

        self.folder = folder
        self.transform = transforms.Compose(
            [transforms.Resize(int(round(size * 256 / 224))), transforms.CenterCrop(size), transforms.PILToTensor()]
        )

    def __len__(self) -> int:
        return len(self.folder)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.folder[index]  # type: ignore[index]
        return self.transform(image.convert("RGB")), label


def read_imagenet(split: str, root: str | None = None, size: int | None = None) -> ImageSet:
    """ImageNet-style ImageFolder tree: ROOT/{train,val}/<class>/<image>; resize 256/224 + center crop."""
    from torchvision.datasets import ImageFolder

    candidates = [Path(root) / "imagenet" / split, Path(root) / split] if root else []
    directory = next((c for c in candidates if c.is_dir()), None)
    if directory is None:
        raise DatasetNotFoundError(
            "imagenet",
            candidates or ["<--data-root>/imagenet/train", "<--data-root>/imagenet/val"],
            "prepare ILSVRC-2012 as class sub-folders (the torchvision ImageFolder layout) under DIR/imagenet",
        )
    expected = "ImageFolder: <split>/<class_name>/<image file>"
    try:
        folder = ImageFolder(str(directory))
    except FileNotFoundError as exc:  # torchvision's "no class folder" / "no valid file" errors
        raise DatasetFormatError(directory, expected, str(exc)) from exc
    if len(folder) == 0:
        raise DatasetFormatError(directory, expected, "no images found")
    loader = _FolderImages(folder, size or 224)
    return ImageSet(None, torch.tensor(folder.targets, dtype=torch.long), loader)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

IMAGE_DATASETS: dict[str, ImageDatasetSpec] = {
    spec.name: spec
    for spec in (
        ImageDatasetSpec("digits", 10, 1, 8, (0.5,), (0.5,), read_digits, "scikit-learn load_digits (bundled)"),
        ImageDatasetSpec("mnist", 10, 1, 28, (0.1307,), (0.3081,), read_mnist, "MNIST IDX files"),
        ImageDatasetSpec(
            "fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), read_fashion_mnist, "Fashion-MNIST IDX (Debian package)"
        ),
        ImageDatasetSpec(
            "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), read_cifar10, "CIFAR-10 pickles"
        ),
        ImageDatasetSpec(
            "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), read_cifar100, "CIFAR-100"
        ),
        ImageDatasetSpec("imagenet", 1000, 3, 224, IMAGENET_MEAN, IMAGENET_STD, read_imagenet, "ImageFolder tree"),
        # PackNet / Piggyback fine-grained datasets (workloads/data/fine_grained.py)
        *(
            ImageDatasetSpec(name, NUM_CLASSES[name], 3, 224, IMAGENET_MEAN, IMAGENET_STD, reader, source)
            for name, reader, source in FINE_GRAINED
        ),
    )
}
