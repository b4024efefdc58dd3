"""The PackNet/Piggyback fine-grained readers on tiny files written in each real layout (JPEG/PNG, .txt, .mat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError
from workloads.data.fine_grained import (
    NUM_CLASSES,
    read_cubs,
    read_flowers102,
    read_places365,
    read_sketch,
    read_stanford_cars,
    read_wikiart,
)
from workloads.data.images import IMAGE_DATASETS, IMAGENET_MEAN, IMAGENET_STD


def write_image(path: Path, shade: int, size: tuple[int, int] = (20, 14), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=shade if mode == "L" else (shade, 255 - shade, 7)).save(path)


def write_folder_pair(base: Path, classes: list[str], held_out: str = "test", per_class: int = 2) -> None:
    for split in ("train", held_out):
        for c, name in enumerate(classes):
            for i in range(per_class):
                ext = ".png" if i % 2 else ".jpg"
                write_image(base / split / name / f"{i:03d}{ext}", 40 * c + i, mode="L" if c == 1 else "RGB")


def assert_items(images: object, size: int) -> None:
    image, label = images[0]  # type: ignore[index]
    assert image.dtype == torch.uint8 and image.shape == (3, size, size) and isinstance(label, int)


# ---- specs ----------------------------------------------------------------------------------------------------------
def test_specs_registered_with_published_class_counts():
    expected = {"cubs": 200, "stanford-cars": 196, "flowers102": 102, "wikiart": 195, "sketch": 250, "places365": 365}
    assert NUM_CLASSES == expected
    for name, classes in expected.items():
        spec = IMAGE_DATASETS[name]
        assert (spec.num_classes, spec.in_channels, spec.native_size) == (classes, 3, 224)
        assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD) and spec.source


# ---- the packaged ImageFolder pair ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reader, folder",
    [
        (read_cubs, "cubs_cropped"),
        (read_stanford_cars, "stanford_cars_cropped"),
        (read_flowers102, "flowers"),
        (read_wikiart, "wikiart"),
        (read_sketch, "sketches"),
        (read_places365, "places"),
        (read_sketch, "sketch"),
    ],
)
def test_packaged_folder_pair(tmp_path, reader, folder):
    held_out = "val" if folder == "places" else "test"
    write_folder_pair(tmp_path / folder, ["b_class", "a_class", "c_class"], held_out)
    train, val = reader("train", str(tmp_path), size=32), reader("val", str(tmp_path), size=32)
    assert len(train) == len(val) == 6
    assert sorted(train.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # classes sorted by folder name
    assert_items(train, 32)
    assert_items(val, 32)
    assert val[0][0].shape == (3, 32, 32)  # grayscale PNGs come back as RGB


def test_folder_pair_val_with_fewer_classes_keeps_train_indices(tmp_path):
    write_folder_pair(tmp_path / "wikiart", ["artist_a", "artist_b", "artist_c"])
    for path in (tmp_path / "wikiart" / "test" / "artist_a").iterdir():
        path.unlink()
    (tmp_path / "wikiart" / "test" / "artist_a").rmdir()
    assert sorted(read_wikiart("val", str(tmp_path)).labels.tolist()) == [1, 1, 2, 2]


def test_folder_pair_rejects_more_classes_than_published(tmp_path):
    write_folder_pair(tmp_path / "flowers", [f"c{i:03d}" for i in range(103)], per_class=1)
    with pytest.raises(DatasetFormatError, match="103 class folders"):
        read_flowers102("train", str(tmp_path))


def test_folder_pair_rejects_unknown_val_class(tmp_path):
    write_folder_pair(tmp_path / "sketches", ["airplane", "bear"])
    write_image(tmp_path / "sketches" / "test" / "zebra" / "0.png", 3)
    with pytest.raises(DatasetFormatError, match="zebra"):
        read_sketch("val", str(tmp_path))


def test_folder_pair_empty_split_is_a_format_error(tmp_path):
    write_folder_pair(tmp_path / "wikiart", ["a"])
    for path in (tmp_path / "wikiart" / "test" / "a").iterdir():
        path.unlink()
    with pytest.raises(DatasetFormatError, match="no images"):
        read_wikiart("val", str(tmp_path))


# ---- CUB-200-2011 ---------------------------------------------------------------------------------------------------
def write_cub(root: Path) -> Path:
    base = root / "CUB_200_2011"
    rows = [(1, "001.Black_footed_Albatross/a_1.jpg", 1, 1), (2, "001.Black_footed_Albatross/a_2.jpg", 1, 0)]
    rows += [(3, "200.Common_Yellowthroat/y_1.jpg", 200, 1), (4, "002.Laysan_Albatross/l_1.jpg", 2, 0)]
    for image_id, path, _, _ in rows:
        write_image(base / "images" / path, image_id * 30)
    (base / "images.txt").write_text("".join(f"{i} {p}\n" for i, p, _, _ in rows))
    (base / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in rows))
    (base / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
    return base


def test_cub_original_layout(tmp_path):
    write_cub(tmp_path)
    train, val = read_cubs("train", str(tmp_path), size=24), read_cubs("val", str(tmp_path))
    assert train.labels.tolist() == [0, 199] and val.labels.tolist() == [0, 1]
    assert_items(train, 24)
    assert_items(val, 224)


def test_cub_malformed_line_names_file_and_line(tmp_path):
    base = write_cub(tmp_path)
    (base / "image_class_labels.txt").write_text("1 1\n2 1\n3 two hundred\n4 2\n")
    with pytest.raises(DatasetFormatError, match=r"image_class_labels\.txt.*line 3"):
        read_cubs("train", str(tmp_path))


def test_cub_label_out_of_range(tmp_path):
    base = write_cub(tmp_path)
    (base / "image_class_labels.txt").write_text("1 1\n2 1\n3 201\n4 2\n")
    with pytest.raises(DatasetFormatError, match="line 3.*outside 1..200"):
        read_cubs("train", str(tmp_path))


def test_cub_missing_metadata_file_is_named(tmp_path):
    base = write_cub(tmp_path)
    (base / "train_test_split.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        read_cubs("train", str(tmp_path))
    assert info.value.searched == [str(base / "train_test_split.txt")]  # only the partial layout's missing file
    assert "cubs_cropped" in str(info.value)  # the layouts accepted are listed


def test_cub_missing_image_is_named(tmp_path):
    base = write_cub(tmp_path)
    (base / "images" / "001.Black_footed_Albatross" / "a_1.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="a_1.jpg"):
        read_cubs("train", str(tmp_path))


# ---- Oxford Flowers-102 ---------------------------------------------------------------------------------------------
def write_flowers(root: Path) -> Path:
    base = root / "flowers-102"
    labels = np.array([[1, 102, 5, 1, 2, 3]], dtype=np.uint8)
    for i in range(1, labels.size + 1):
        write_image(base / "jpg" / f"image_{i:05d}.jpg", 20 * i, size=(30, 20))
    savemat(base / "imagelabels.mat", {"labels": labels})
    savemat(base / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3]]), "tstid": np.array([[4, 5, 6]])})
    return base


def test_flowers_original_layout_train_is_trnid_plus_valid(tmp_path):
    write_flowers(tmp_path)
    train, val = read_flowers102("train", str(tmp_path), size=16), read_flowers102("val", str(tmp_path), size=16)
    assert train.labels.tolist() == [0, 101, 4] and val.labels.tolist() == [0, 1, 2]
    assert_items(train, 16)


def test_flowers_bad_mat_and_missing_key(tmp_path):
    base = write_flowers(tmp_path)
    savemat(base / "setid.mat", {"trnid": np.array([[1]])})
    with pytest.raises(DatasetFormatError, match="setid.mat.*missing"):
        read_flowers102("train", str(tmp_path))
    (base / "imagelabels.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetFormatError, match="imagelabels.mat"):
        read_flowers102("train", str(tmp_path))


def test_flowers_label_out_of_range(tmp_path):
    base = write_flowers(tmp_path)
    savemat(base / "imagelabels.mat", {"labels": np.array([[1, 103, 5, 1, 2, 3]])})
    with pytest.raises(DatasetFormatError, match="labels\\[1\\]"):
        read_flowers102("train", str(tmp_path))


# ---- Stanford Cars (devkit .mat struct arrays) ----------------------------------------------------------------------
def cars_annotations(names: list[str], classes: list[int]) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annotations = np.zeros((1, len(names)), dtype=[(f, "O") for f in fields])
    for i, (name, cls) in enumerate(zip(names, classes, strict=True)):
        boxes = [np.array([[v]], dtype=np.uint16) for v in (1, 2, 20, 10)]
        annotations[0, i] = (*boxes, np.array([[cls]], dtype=np.uint8), np.array([name]))
    return annotations


def test_stanford_cars_original_layout(tmp_path):
    base = tmp_path / "stanford_cars"
    for folder, names in (("cars_train", ["00001.jpg", "00002.jpg"]), ("cars_test", ["00001.jpg"])):
        for i, name in enumerate(names):
            write_image(base / folder / name, 50 * i)
    (base / "devkit").mkdir()
    savemat(
        base / "devkit" / "cars_train_annos.mat",
        {"annotations": cars_annotations(["00001.jpg", "00002.jpg"], [196, 3])},
    )
    savemat(base / "cars_test_annos_withlabels.mat", {"annotations": cars_annotations(["00001.jpg"], [7])})
    train, val = read_stanford_cars("train", str(tmp_path), size=20), read_stanford_cars("val", str(tmp_path))
    assert train.labels.tolist() == [195, 2] and val.labels.tolist() == [6]
    assert_items(train, 20)
    assert_items(val, 224)


def test_stanford_cars_missing_test_annotations_named(tmp_path):
    (tmp_path / "stanford_cars" / "cars_test").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        read_stanford_cars("val", str(tmp_path))
    assert any("cars_test_annos_withlabels.mat" in path for path in info.value.searched)


# ---- Places365-Standard ---------------------------------------------------------------------------------------------
def write_places(root: Path, train_dir: str = "data_256") -> Path:
    base = root / "places365"
    categories = ["/a/airfield", "/a/airplane_cabin", "/z/zen_garden"]
    (base / "categories_places365.txt").parent.mkdir(parents=True)
    (base / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(categories)))
    train = [("/a/airfield/00000001.jpg", 0), ("/z/zen_garden/00000001.jpg", 364)]
    val = [("Places365_val_00000001.jpg", 165), ("Places365_val_00000002.jpg", 0)]
    (base / "places365_train_standard.txt").write_text("".join(f"{p} {c}\n" for p, c in train))
    (base / "places365_val.txt").write_text("".join(f"{p} {c}\n" for p, c in val))
    for i, (path, _) in enumerate(train):
        write_image(base / train_dir / path.lstrip("/"), 60 * i, size=(25, 25))
    for i, (path, _) in enumerate(val):
        write_image(base / "val_256" / path, 60 * i, size=(25, 25))
    return base


@pytest.mark.parametrize("train_dir", ["data_256", "data_256_standard"])
def test_places365_split_files(tmp_path, train_dir):
    write_places(tmp_path, train_dir)
    train, val = read_places365("train", str(tmp_path), size=16), read_places365("val", str(tmp_path), size=16)
    assert train.labels.tolist() == [0, 364] and val.labels.tolist() == [165, 0]
    assert_items(train, 16)
    assert_items(val, 16)


def test_places365_malformed_line(tmp_path):
    base = write_places(tmp_path)
    (base / "places365_val.txt").write_text("Places365_val_00000001.jpg 165\nPlaces365_val_00000002.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"places365_val\.txt.*line 2"):
        read_places365("val", str(tmp_path))


def test_places365_missing_val_images_named(tmp_path):
    base = write_places(tmp_path)
    for path in (base / "val_256").iterdir():
        path.unlink()
    (base / "val_256").rmdir()
    with pytest.raises(DatasetNotFoundError) as info:
        read_places365("val", str(tmp_path))
    assert info.value.searched == [f"{base / 'val_256'} or {base / 'val_large'}"]


# ---- missing root / bad split ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reader", [read_cubs, read_stanford_cars, read_flowers102, read_wikiart, read_sketch, read_places365]
)
def test_missing_root_names_expected_files(tmp_path, reader):
    with pytest.raises(DatasetNotFoundError, match="--data-root"):
        reader("train", None)
    with pytest.raises(DatasetNotFoundError) as info:
        reader("val", str(tmp_path))
    assert all(str(tmp_path) in path for path in info.value.searched)
    assert any(path.endswith("/train") for path in info.value.searched)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        read_wikiart("test", "/nonexistent")
