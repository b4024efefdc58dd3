"""Readers for the fine-grained transfer datasets of PackNet (arXiv 1711.05769) and Piggyback (arXiv 1801.06519).

Every dataset is accepted in the layout of the packaged data the papers' READMEs distribute (github.com/arunmallya/
packnet, github.com/arunmallya/piggyback): an ImageFolder pair ``DIR/<folder>/train/<class>/<image>`` plus
``DIR/<folder>/test/<class>/<image>`` (``val/`` instead of ``test/`` as for their ``places``), with the folder names
their scripts use (``cubs_cropped``, ``stanford_cars_cropped``, ``flowers``, ``wikiart``, ``sketches``, ``places``) or
the spec name. ImageFolder classes are the train folder's class sub-folders sorted by name; a tiny set may have fewer
class folders than the published count, but never more. The split ``val`` is the papers' test split.

Original distributions, where their metadata gives the split (labels then index the published classes):

* CUB-200-2011: ``CUB_200_2011/{images.txt, image_class_labels.txt (1-based), train_test_split.txt (1 = train),
  images/<class>/<file>.jpg}``; the bounding boxes are not applied (the papers' ``cubs_cropped`` is pre-cropped).
* Stanford Cars (the torchvision layout): ``stanford_cars/{devkit/cars_train_annos.mat, cars_train/,
  cars_test_annos_withlabels.mat (or devkit/...), cars_test/}``; ``class`` is 1-based, bounding boxes unused.
* Oxford Flowers-102: ``{jpg/image_XXXXX.jpg, imagelabels.mat, setid.mat}``; train = ``trnid`` + ``valid``, val =
  ``tstid`` (the papers' convention: 2,040 train / 6,149 test images).
* Places365-Standard: ``categories_places365.txt``, ``places365_train_standard.txt`` (``/a/airfield/00000001.jpg 0``
  under ``data_256/``, or torchvision's ``data_256_standard/``, or the ``*_large`` variants) and ``places365_val.txt``
  (``Places365_val_00000001.jpg 165`` under ``val_256/`` or ``val_large/``).

WikiArt (Piggyback's 195-artist split) and Sketch (TU-Berlin, which ships without a train/test split) exist only as
the packaged ImageFolder pair. Images load lazily and are resized/centre-cropped to ``size`` like ImageNet's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError

if TYPE_CHECKING:
    from workloads.data.images import ImageSet

PLACEHOLDER_ROOT = Path("<--data-root>")
PACKAGED = "the Piggyback/PackNet packaged data (https://uofi.box.com/s/ixncr3d85guosajywhf7yridszzg5zsq)"
FOLDER_EXPECTED = "ImageFolder: <split>/<class_name>/<image file>"
# published class counts (the num_outputs of the PackNet/Piggyback scripts)
NUM_CLASSES = {"cubs": 200, "stanford-cars": 196, "flowers102": 102, "wikiart": 195, "sketch": 250, "places365": 365}

Requirement = tuple[str, ...]  # alternative paths relative to a candidate folder; the first that exists is used
Builder = Callable[[list[Path], str, int], tuple[list[Path], list[int]]]  # resolved paths, split, classes -> items


@dataclass(frozen=True)
class Layout:
    """One on-disk layout: candidate folders under the data root, the files it needs per split, and its parser."""

    describe: str
    folders: tuple[str, ...]  # "" is the data root itself
    needs: Callable[[str], list[Requirement]]
    build: Builder


# ---- lazily loaded file lists ---------------------------------------------------------------------------------------
class _ImageFiles(Dataset):
    """(PIL image, label) per listed file, opened on access; wrapped by ``images._FolderImages`` for resizing."""

    def __init__(self, paths: list[Path], labels: list[int]) -> None:
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[object, int]:
        from torchvision.datasets.folder import default_loader

        return default_loader(str(self.paths[index])), self.labels[index]


def _lazy_set(name: str, paths: list[Path], labels: list[int], listed_in: Path, size: int | None) -> ImageSet:
    from workloads.data.images import ImageSet, _FolderImages

    if not paths:
        raise DatasetFormatError(listed_in, "at least one image in the split", "no images found")
    if not paths[0].is_file():  # one stat, not millions: catches an image folder that does not match the list
        raise DatasetNotFoundError(name, [paths[0]], f"extract the images so that the paths in {listed_in} resolve")
    return ImageSet(
        None, torch.tensor(labels, dtype=torch.long), _FolderImages(_ImageFiles(paths, labels), size or 224)
    )


# ---- generic parsers ------------------------------------------------------------------------------------------------
def _class_index(num_classes: int, offset: int) -> Callable[[str], int]:
    """Parse a label (``offset``-based in the file) into a 0-based index below ``num_classes``."""

    def convert(token: str) -> int:
        value = int(token) - offset
        if not 0 <= value < num_classes:
            raise ValueError(f"label {token} outside {offset}..{num_classes - 1 + offset}")
        return value

    return convert


def _read_table(path: Path, expected: str, converters: Sequence[Callable[[str], object]]) -> list[tuple]:
    """Whitespace-separated rows of exactly ``len(converters)`` fields; blank lines are skipped."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != len(converters):
                raise ValueError(f"{len(fields)} fields instead of {len(converters)}")
            rows.append(tuple(convert(field) for convert, field in zip(converters, fields, strict=True)))
        except ValueError as exc:
            raise DatasetFormatError(path, expected, f"line {number} ({line.strip()!r}): {exc}") from exc
    return rows


def _load_mat(path: Path, keys: Sequence[str]) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    expected = f"MATLAB .mat file with variables {', '.join(keys)}"
    try:
        mat = loadmat(str(path), squeeze_me=True)
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise DatasetFormatError(path, expected, f"not a readable .mat file ({exc})") from exc
    missing = [k for k in keys if k not in mat]
    if missing:
        raise DatasetFormatError(path, expected, f"variables {missing} missing")
    return mat


def _checked_label(value: object, num_classes: int, path: Path, where: str) -> int:
    try:
        return _class_index(num_classes, 1)(str(value))
    except ValueError as exc:
        raise DatasetFormatError(path, f"1-based class labels 1..{num_classes}", f"{where}: {exc}") from exc


# ---- ImageFolder pair (the packaged data) ---------------------------------------------------------------------------
def _class_folders(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir() if entry.is_dir())


def _build_folder_pair(paths: list[Path], split: str, num_classes: int) -> tuple[list[Path], list[int]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    train_dir, held_out_dir = paths
    classes = _class_folders(train_dir)
    if len(classes) > num_classes:
        problem = f"{len(classes)} class folders, more than the dataset's {num_classes} classes"
        raise DatasetFormatError(train_dir, FOLDER_EXPECTED, problem)
    directory = train_dir if split == "train" else held_out_dir
    unknown = sorted(set(_class_folders(directory)) - set(classes))
    if unknown:
        raise DatasetFormatError(directory, FOLDER_EXPECTED, f"class folders {unknown[:5]} are not in {train_dir}")
    class_to_idx = {name: index for index, name in enumerate(classes)}
    samples = make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise DatasetFormatError(directory, FOLDER_EXPECTED, "no images found")
    return [Path(p) for p, _ in samples], [label for _, label in samples]


def folder_pair(*folders: str) -> Layout:
    """The packaged layout ``DIR/<folder>/train`` + ``DIR/<folder>/test`` (or ``val``), for each alias folder."""
    return Layout(
        f"{PACKAGED}: DIR/{folders[0]}/train/<class>/*.jpg and DIR/{folders[0]}/test/<class>/*.jpg "
        f"(folder also accepted as {', '.join(folders[1:]) or '-'}; val/ for test/)",
        folders,
        lambda split: [("train",), ("test", "val")],
        _build_folder_pair,
    )


# ---- original distributions -----------------------------------------------------------------------------------------
def _build_cub(paths: list[Path], split: str, num_classes: int) -> tuple[list[Path], list[int]]:
    images_txt, labels_txt, split_txt, image_dir = paths
    names = dict(_read_table(images_txt, "<image_id> <relative path>", (int, str)))
    labels = dict(_read_table(labels_txt, "<image_id> <class_id 1-based>", (int, _class_index(num_classes, 1))))
    is_train = dict(_read_table(split_txt, "<image_id> <is_training_image 0/1>", (int, _class_index(2, 0))))
    for table, path in ((labels, labels_txt), (is_train, split_txt)):
        missing = sorted(set(names) - set(table))
        if missing:
            raise DatasetFormatError(
                path, "one line per image id of images.txt", f"no line for image ids {missing[:5]}"
            )
    keep = [i for i in names if is_train[i] == (split == "train")]
    return [image_dir / names[i] for i in keep], [labels[i] for i in keep]


def _build_flowers(paths: list[Path], split: str, num_classes: int) -> tuple[list[Path], list[int]]:
    import numpy as np

    labels_mat, setid_mat, image_dir = paths
    labels = np.atleast_1d(_load_mat(labels_mat, ["labels"])["labels"])
    setid = _load_mat(setid_mat, ["trnid", "valid", "tstid"])
    keys = ("trnid", "valid") if split == "train" else ("tstid",)
    ids = [int(i) for key in keys for i in np.atleast_1d(setid[key])]
    bad = [i for i in ids if not 1 <= i <= len(labels)]
    if bad:
        raise DatasetFormatError(setid_mat, f"1-based image ids 1..{len(labels)}", f"ids {bad[:5]} out of range")
    targets = [_checked_label(labels[i - 1], num_classes, labels_mat, f"labels[{i - 1}]") for i in ids]
    return [image_dir / f"image_{i:05d}.jpg" for i in ids], targets


def _build_cars(paths: list[Path], split: str, num_classes: int) -> tuple[list[Path], list[int]]:
    import numpy as np

    annos_mat, image_dir = paths
    annotations = np.atleast_1d(_load_mat(annos_mat, ["annotations"])["annotations"])
    if annotations.dtype.names is None or not {"fname", "class"} <= set(annotations.dtype.names):
        expected = "struct array 'annotations' with fields fname and class"
        raise DatasetFormatError(annos_mat, expected, f"fields {annotations.dtype.names}")
    targets = [
        _checked_label(a["class"], num_classes, annos_mat, f"annotations[{i}]") for i, a in enumerate(annotations)
    ]
    return [image_dir / str(a["fname"]) for a in annotations], targets


def _build_places(paths: list[Path], split: str, num_classes: int) -> tuple[list[Path], list[int]]:
    categories_txt, list_txt, image_dir = paths
    categories = _read_table(categories_txt, "/<letter>/<category> <index>", (str, _class_index(num_classes, 0)))
    if len(categories) > num_classes:
        raise DatasetFormatError(categories_txt, f"at most {num_classes} lines", f"{len(categories)} categories")
    rows = _read_table(list_txt, "<image path> <class index 0-based>", (str, _class_index(num_classes, 0)))
    return [image_dir / path.lstrip("/") for path, _ in rows], [label for _, label in rows]


CUB_LAYOUT = Layout(
    "the original CUB_200_2011.tgz: DIR/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, "
    "images/}",
    ("CUB_200_2011", "cubs/CUB_200_2011", ""),
    lambda split: [("images.txt",), ("image_class_labels.txt",), ("train_test_split.txt",), ("images",)],
    _build_cub,
)
CARS_LAYOUT = Layout(
    "the original Stanford Cars (torchvision layout): DIR/stanford_cars/{devkit/cars_train_annos.mat, cars_train/, "
    "cars_test_annos_withlabels.mat, cars_test/}",
    ("stanford_cars", "stanford-cars", ""),
    lambda split: (
        [("devkit/cars_train_annos.mat",), ("cars_train",)]
        if split == "train"
        else [("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat"), ("cars_test",)]
    ),
    _build_cars,
)
FLOWERS_LAYOUT = Layout(
    "the original Oxford 102 Flowers files: DIR/flowers-102/{jpg/, imagelabels.mat, setid.mat}",
    ("flowers-102", "flowers102", "oxford-flowers102", ""),
    lambda split: [("imagelabels.mat",), ("setid.mat",), ("jpg",)],
    _build_flowers,
)
PLACES_TRAIN_DIRS = ("data_256", "data_256_standard", "train_256", "data_large", "data_large_standard", "train_large")
PLACES_LAYOUT = Layout(
    "Places365-Standard devkit + images: DIR/places365/{categories_places365.txt, places365_train_standard.txt, "
    "places365_val.txt, data_256/ (train_256_places365standard.tar), val_256/ (val_256.tar)}",
    ("places365", "places", ""),
    lambda split: (
        [("categories_places365.txt",), ("places365_train_standard.txt",), PLACES_TRAIN_DIRS]
        if split == "train"
        else [("categories_places365.txt",), ("places365_val.txt",), ("val_256", "val_large")]
    ),
    _build_places,
)


# ---- the generic reader ---------------------------------------------------------------------------------------------
def _resolve(base: Path, needs: list[Requirement]) -> tuple[list[Path | None], list[str]]:
    """The first existing alternative per requirement (None where none exists) and the missing requirements."""
    found = [next((base / alt for alt in alts if (base / alt).exists()), None) for alts in needs]
    missing = [" or ".join(str(base / alt) for alt in alts) for alts, f in zip(needs, found, strict=True) if f is None]
    return found, missing


def fine_grained_reader(name: str, layouts: Sequence[Layout]) -> Callable[..., ImageSet]:
    """A reader trying each layout's candidate folders in order; the first complete one is read."""
    num_classes = NUM_CLASSES[name]

    def reader(split: str, root: str | None = None, size: int | None = None) -> ImageSet:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', not {split!r}")
        base_root = Path(root) if root else PLACEHOLDER_ROOT
        partial: list[str] = []
        searched: list[str] = []
        for layout in layouts:
            for folder in layout.folders:
                found, missing = _resolve(base_root / folder, layout.needs(split))
                if root and not missing:
                    paths, labels = layout.build(found, split, num_classes)  # type: ignore[arg-type]
                    return _lazy_set(name, paths, labels, found[0], size)  # type: ignore[arg-type]
                searched.extend(missing)
                if len(missing) < len(found):
                    partial.extend(missing)
        how = "use one of these layouts under --data-root DIR: " + "; or ".join(layout.describe for layout in layouts)
        raise DatasetNotFoundError(name, partial or searched, how)

    return reader


read_cubs = fine_grained_reader("cubs", [folder_pair("cubs_cropped", "cubs"), CUB_LAYOUT])
read_stanford_cars = fine_grained_reader(
    "stanford-cars", [folder_pair("stanford_cars_cropped", "stanford-cars", "stanford_cars"), CARS_LAYOUT]
)
read_flowers102 = fine_grained_reader("flowers102", [folder_pair("flowers", "flowers102"), FLOWERS_LAYOUT])
read_wikiart = fine_grained_reader("wikiart", [folder_pair("wikiart")])
read_sketch = fine_grained_reader("sketch", [folder_pair("sketches", "sketch")])
read_places365 = fine_grained_reader(
    "places365", [folder_pair("places", "places365", "places365_standard"), PLACES_LAYOUT]
)

# (spec name, reader, source) for ``images.IMAGE_DATASETS``; the class counts are NUM_CLASSES
FINE_GRAINED: tuple[tuple[str, Callable[..., ImageSet], str], ...] = (
    ("cubs", read_cubs, "CUB-200-2011 birds (Wah et al. 2011); PackNet/Piggyback cubs_cropped"),
    ("stanford-cars", read_stanford_cars, "Stanford Cars (Krause et al. 2013); PackNet/Piggyback"),
    ("flowers102", read_flowers102, "Oxford Flowers-102 (Nilsback & Zisserman 2008); PackNet/Piggyback"),
    ("wikiart", read_wikiart, "WikiArt artists (Saleh & Elgammal 2015); Piggyback wikiart split"),
    ("sketch", read_sketch, "TU-Berlin sketches (Eitz et al. 2012); Piggyback sketches split"),
    ("places365", read_places365, "Places365-Standard (Zhou et al. 2017); PackNet places"),
)
