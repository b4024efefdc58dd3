"""The image readers on small files written in the real on-disk formats (IDX, CIFAR pickles, ImageFolder PNGs)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError
from workloads.data.images import (
    FASHION_MNIST_SYSTEM_DIR,
    ImageSet,
    image_collate,
    read_cifar10,
    read_cifar100,
    read_digits,
    read_fashion_mnist,
    read_idx,
    read_imagenet,
    read_mnist,
)


# ---- writers of the real formats ------------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: two zero bytes, dtype code 0x08 (uint8), ndim, big-endian uint32 dims, then the data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist_dir(directory: Path, gz: bool, n_train: int = 12, n_val: int = 5) -> dict[str, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n, (img_name, lbl_name) in (
        ("train", n_train, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
        ("val", n_val, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    ):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(directory / img_name, images, gz)
        write_idx(directory / lbl_name, labels, gz)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def write_cifar_batch(path: Path, n: int, label_key: str, first_label: int = 0) -> np.ndarray:
    data = np.random.default_rng(n + first_label).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [(first_label + i) % 10 for i in range(n)]
    with open(path, "wb") as fh:
        pickle.dump({"data": data, label_key: labels, "batch_label": "synthetic"}, fh)
    return data


# ---- IDX ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_reader_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist_dir(tmp_path / "mnist", gz)
    train = read_mnist("train", str(tmp_path))
    val = read_mnist("val", str(tmp_path))
    assert len(train) == 12 and len(val) == 5
    image, label = train[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8
    assert torch.equal(image[0], torch.from_numpy(arrays["train_images"][3]))
    assert label == 3
    assert val.labels.tolist() == [0, 1, 2, 3, 4]


def test_fashion_mnist_reader_prefers_data_root(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path / "fashion-mnist", gz=True, n_train=7, n_val=3)
    assert len(read_fashion_mnist("train", str(tmp_path))) == 7
    assert len(read_fashion_mnist("val", str(tmp_path))) == 3


def test_fashion_mnist_system_copy() -> None:
    if not (FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({FASHION_MNIST_SYSTEM_DIR} absent)")
    val = read_fashion_mnist("val")
    assert len(val) == 10_000
    assert val[0][0].shape == (1, 28, 28)
    assert sorted(set(val.labels.tolist())) == list(range(10))


def test_read_idx_hand_made_header(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))  # magic 0x00000801, 3 items: 7, 8, 9
    assert read_idx(path).tolist() == [7, 8, 9]


def test_missing_idx_files_name_the_searched_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        read_mnist("train", str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte") in message
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte") in info.value.searched
    assert "--data-root" in message


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x00\x00\x08", "only 3 bytes"),
        (bytes([0, 0, 9, 1, 0, 0, 0, 1, 5]), "bad magic"),  # dtype code 0x09 (int8) is not the uint8 MNIST uses
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]), "header says"),  # promises 4 labels, holds 2
    ],
    ids=["short", "magic", "truncated"],
)
def test_malformed_idx_raises_format_error(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match=problem):
        read_idx(path)


def test_non_gzip_gz_file_raises_format_error(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(idx_bytes(np.arange(4, dtype=np.uint8)))  # not compressed despite the suffix
    with pytest.raises(DatasetFormatError, match="decompress"):
        read_idx(path)


def test_idx_image_label_count_mismatch(tmp_path: Path) -> None:
    directory = tmp_path / "mnist"
    write_mnist_dir(directory, gz=False)
    write_idx(directory / "train-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8), gz=False)
    with pytest.raises(DatasetFormatError, match="do not match"):
        read_mnist("train", str(tmp_path))


# ---- CIFAR ----------------------------------------------------------------------------------------------------------
def test_cifar10_reader_concatenates_batches_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    first = write_cifar_batch(folder / "data_batch_1", 4, "labels", first_label=0)
    for i in range(2, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 4, "labels", first_label=i)
    write_cifar_batch(folder / "test_batch", 3, "labels", first_label=7)
    train, val = read_cifar10("train", str(tmp_path)), read_cifar10("val", str(tmp_path))
    assert len(train) == 20 and len(val) == 3
    image, label = train[1]
    assert image.shape == (3, 32, 32) and label == 1
    # row layout: 1024 red values, then 1024 green, then 1024 blue, each row-major 32x32
    assert int(image[0, 0, 5]) == int(first[1, 5])
    assert int(image[1, 2, 0]) == int(first[1, 1024 + 64])
    assert int(image[2, 31, 31]) == int(first[1, 3071])
    assert train.labels[4:8].tolist() == [2, 3, 4, 5]
    assert val.labels.tolist() == [7, 8, 9]


def test_cifar100_reader_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar100" / "cifar-100-python"  # the nested layout is searched too
    folder.mkdir(parents=True)
    write_cifar_batch(folder / "train", 6, "fine_labels", first_label=3)
    write_cifar_batch(folder / "test", 2, "fine_labels")
    train = read_cifar100("train", str(tmp_path))
    assert train.labels.tolist() == [3, 4, 5, 6, 7, 8]
    assert train.images.shape == (6, 3, 32, 32)


def test_missing_cifar_names_the_searched_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        read_cifar10("val", str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in str(info.value)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch") in info.value.searched


@pytest.mark.parametrize(
    "payload, problem",
    [
        (b"this is not a pickle", "not a readable pickle"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}), "keys missing"),
        (pickle.dumps([1, 2, 3]), "keys missing"),
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}), "shape"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}), "shape"),
    ],
    ids=["garbage", "no-labels", "not-a-dict", "wrong-width", "count-mismatch"],
)
def test_malformed_cifar_raises_format_error(tmp_path: Path, payload: bytes, problem: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DatasetFormatError, match=problem) as info:
        read_cifar10("val", str(tmp_path))
    assert info.value.path == str(folder / "test_batch")


# ---- ImageFolder ----------------------------------------------------------------------------------------------------
def write_png_tree(split_dir: Path, classes: dict[str, int], size: tuple[int, int] = (40, 30)) -> None:
    from PIL import Image

    for k, (name, count) in enumerate(sorted(classes.items())):
        (split_dir / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.full((size[1], size[0], 3), 40 * k + i, dtype=np.uint8)
            Image.fromarray(pixels).save(split_dir / name / f"img{i}.png")


def test_imagefolder_reader_resizes_and_labels(tmp_path: Path) -> None:
    write_png_tree(tmp_path / "imagenet" / "val", {"n01": 2, "n02": 3})
    val = read_imagenet("val", str(tmp_path), size=16)
    assert len(val) == 5
    assert val.labels.tolist() == [0, 0, 1, 1, 1]  # classes sorted by folder name
    image, label = val[3]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == 1
    assert int(image[0, 8, 8]) == 40 + 1  # uniform image keeps its value through resize + center crop
    subset = val.subset(2)
    assert len(subset) == 2 and subset[0][0].shape == (3, 16, 16)


def test_imagefolder_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        read_imagenet("train", str(tmp_path))
    assert str(tmp_path / "imagenet" / "train") in info.value.searched
    (tmp_path / "imagenet" / "train").mkdir(parents=True)  # exists but has no class folders
    with pytest.raises(DatasetFormatError, match="ImageFolder"):
        read_imagenet("train", str(tmp_path))
    (tmp_path / "imagenet" / "train" / "cls").mkdir()
    (tmp_path / "imagenet" / "train" / "cls" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetFormatError):
        read_imagenet("train", str(tmp_path))


# ---- digits split, subsets and collation -----------------------------------------------------------------------------
def test_digits_split_is_deterministic_and_disjoint() -> None:
    train_a, train_b, val = read_digits("train"), read_digits("train"), read_digits("val")
    assert (len(train_a), len(val)) == (1437, 360)  # stratified 80/20 of 1,797
    assert torch.equal(train_a.images, train_b.images) and torch.equal(train_a.labels, train_b.labels)
    assert train_a.images.shape[1:] == (1, 8, 8) and int(train_a.images.max()) <= 255

    def rows(data: ImageSet) -> list[bytes]:
        return [x.numpy().tobytes() + bytes([int(y)]) for x, y in zip(data.images, data.labels, strict=True)]

    train_rows = set(rows(train_a))
    overlap = sum(row in train_rows for row in rows(val))
    assert overlap <= 5  # the digits set holds a few exact duplicates; a broken split would overlap by hundreds
    assert torch.bincount(val.labels).min() >= 35  # stratified: every class ~36 times


def test_subset_is_seeded_and_stable() -> None:
    data = ImageSet(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1), torch.arange(50))
    a, b = data.subset(10), data.subset(10)
    assert torch.equal(a.labels, b.labels) and len(set(a.labels.tolist())) == 10
    assert a.labels.tolist() != list(range(10))  # a permutation, not the head
    assert data.subset(None) is data and data.subset(50) is data


def test_image_collate_resizes_expands_and_normalises() -> None:
    items = [(torch.full((1, 8, 8), 255, dtype=torch.uint8), 3), (torch.zeros(1, 8, 8, dtype=torch.uint8), 7)]
    collate = image_collate(16, 3, (0.5,), (0.25,))
    images, labels = collate(items)
    assert images.shape == (2, 3, 16, 16) and labels.tolist() == [3, 7]
    assert torch.allclose(images[0], torch.full((3, 16, 16), 2.0))  # (1 - 0.5) / 0.25
    assert torch.allclose(images[1], torch.full((3, 16, 16), -2.0))  # (0 - 0.5) / 0.25


class _CreatesAFile:
    """Unpickling this runs ``os.system('touch ...')``: what a crafted "dataset" could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_cifar_reader_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "ran"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(folder / name, 2, "labels")
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({"data": _CreatesAFile(marker), "labels": [0, 1]}, fh)
    with pytest.raises(DatasetFormatError, match="unsafe pickle.*posix.system|unsafe pickle.*os.system"):
        read_cifar10("train", str(tmp_path))
    assert not marker.exists()


def test_cifar_reader_reads_protocol_2_batches_as_the_real_archive_has(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:  # the archive's protocol 2: array bytes go through _codecs.encode
            pickle.dump({"data": data, "labels": [3, 4], "batch_label": "x"}, fh, protocol=2)
    val = read_cifar10("val", str(tmp_path))
    assert len(val) == 2


def test_cifar_reader_accepts_byte_string_keys(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:  # what pickle.load(f, encoding="bytes") yields for the archive
            pickle.dump({b"data": data, b"labels": [3, 4], b"batch_label": b"x"}, fh, protocol=2)
    val = read_cifar10("val", str(tmp_path))
    assert len(val) == 2 and val[1][1] == 4
