"""Task sequences (harness/tasks.py): syntax, class splits with remapped labels, MNIST-format files, the
fine-grained readers as tasks, the record, and the pre-flight refusals before any training."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from compressors.base import IncompatibleWorkloadError
from harness.config import RunConfig
from harness.runner import prepare
from harness.suite_file import expand_suite, to_run_config
from harness.tasks import TaskDataError, TaskSequenceError, parse_sequence, split_items
from tests.workloads.test_fine_grained_readers import write_folder_pair
from workloads.data.errors import DatasetNotFoundError
from workloads.data.images import read_digits

TINY = {"max_train_samples": "64", "max_val_samples": "32", "epochs": "1"}


def _labels(dataset: str) -> tuple[int, ...]:
    return tuple(range({"digits": 10, "fashion-mnist": 10, "cifar100": 100}[dataset]))


def _config(tasks: object, compressor: str = "packnet", workload: str = "lenet3", **kw: object) -> RunConfig:
    kw.setdefault("recipe_overrides", dict(TINY))
    return RunConfig(workload=workload, compressor=compressor, tasks=tasks, **kw)  # type: ignore[arg-type]


# ---- syntax ---------------------------------------------------------------------------------------------------------
def test_split_items_keeps_commas_of_class_lists() -> None:
    assert split_items("a, b[0,1,2] ,split-c:5,") == ["a", "b[0,1,2]", "split-c:5"]
    assert RunConfig(workload="lenet3", tasks="digits,digits[0,3]").tasks == ["digits", "digits[0,3]"]


def test_split_sequence_is_k_tasks_of_consecutive_classes() -> None:
    specs = parse_sequence(["digits", "split-fashion-mnist:5"], _labels)
    assert [s.name for s in specs] == ["digits"] + [f"fashion-mnist[{i}-{i + 1}]" for i in range(0, 10, 2)]
    assert specs[0].classes is None and specs[3].classes == (4, 5) and specs[3].item == "split-fashion-mnist:5"


def test_class_subsets_are_sorted_and_named_canonically() -> None:
    specs = parse_sequence(["digits[7,2,5]", "fashion-mnist[3-6]", "cifar100[9]"], _labels)
    assert [(s.name, s.classes) for s in specs] == [
        ("digits[2,5,7]", (2, 5, 7)), ("fashion-mnist[3-6]", (3, 4, 5, 6)), ("cifar100[9]", (9,)),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["split-digits:3"], r"cannot be split evenly into 3 tasks; use K in \[1, 2, 5, 10\]"),
        (["digits[3-12]"], r"digits has no class\(es\) \[10, 11, 12\]"),
        (["digits[a]"], "bad class list"),
        (["digits[1,1]"], "repeats a class"),
        (["digits", "split-digits:1"], r"repeats \['digits'\]"),
        (["no-such-set"], "unknown task dataset 'no-such-set'"),
    ],
)
def test_bad_sequences_name_the_item(items: list[str], message: str) -> None:
    from harness.tasks import _Labels

    with pytest.raises(TaskSequenceError, match=message):
        parse_sequence(items, _Labels(None))


# ---- the tasks as workloads -----------------------------------------------------------------------------------------
def test_class_split_remaps_labels_and_keeps_only_its_images() -> None:
    prepared = prepare(_config("digits[0-4],digits[5-9]", recipe_overrides={}))
    first, second = prepared.tasks
    assert prepared.workload is first.workload and prepared.config.dataset == "digits[0-4]"
    full = read_digits("val")
    originals = full.images[full.labels >= 5]
    val = second.workload.split("val")
    assert second.workload.num_classes == 5 and len(val) == len(originals)
    assert torch.equal(val.labels, full.labels[full.labels >= 5] - 5)  # 5..9 -> 0..4, same order
    assert torch.equal(val.images, originals)
    described = second.describe()
    assert described["classes"] == [5, 6, 7, 8, 9] and described["num_classes"] == 5
    assert described["val_samples"] == len(originals) and "scikit-learn" in described["source"]


def _write_idx(folder: Path, split: str, labels: list[int], size: int = 28) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    images = (np.arange(len(labels) * size * size) % 251).astype(np.uint8).reshape(len(labels), size, size)
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">HBBIII", 0, 8, 3, len(labels), size, size) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">HBBI", 0, 8, 1, len(labels)) + bytes(labels))


def test_mnist_format_files_given_by_the_user_are_a_task(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _write_idx(tmp_path / "letters", split, [1, 3, 7, 3, 1, 7, 7, 1])  # labels need not start at 0
    prepared = prepare(_config("digits,idx:letters,split-idx:letters:3", data_root=str(tmp_path)))
    names = [t.name for t in prepared.tasks]
    assert names == ["digits", "idx:letters", "idx:letters[1]", "idx:letters[3]", "idx:letters[7]"]
    letters = prepared.tasks[1].workload
    assert letters.num_classes == 3 and sorted(set(letters.split("train").labels.tolist())) == [0, 1, 2]
    assert "MNIST-format IDX files in" in prepared.tasks[1].describe()["source"]
    assert prepared.tasks[3].workload.split("val").labels.tolist() == [0, 0]  # the two 3s, as task label 0


def test_fine_grained_datasets_in_their_real_layout_are_tasks_of_vgg_and_resnet(tmp_path: Path) -> None:
    write_folder_pair(tmp_path / "flowers", ["alpine", "bluebell", "crocus"])
    write_folder_pair(tmp_path / "cubs_cropped", ["albatross", "bunting"])
    for workload in ("vgg16_bn", "resnet50"):
        prepared = prepare(_config("digits,flowers102,cubs", workload=workload, data_root=str(tmp_path)))
        flowers = prepared.tasks[1]
        assert flowers.workload.num_classes == 102 and len(flowers.workload.split("train")) == 6
        image, label = flowers.workload.split("val")[0]
        assert image.shape == (3, 32, 32) and label == 0  # resized to task 1's input (the tiny recipe's 32x32)
        assert prepared.tasks[2].describe()["train_samples"] == 4


# ---- pre-flight -----------------------------------------------------------------------------------------------------
def test_a_single_task_compressor_given_tasks_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(TaskSequenceError, match=r"'dsd' \(kind 'training'\) trains one task only.*packnet, piggyback"):
        prepare(_config("digits,split-fashion-mnist:2", compressor="dsd", results=str(tmp_path)))


def test_a_multitask_compressor_needs_a_sequence() -> None:
    with pytest.raises(TaskSequenceError, match="needs a task sequence: pass e.g. --tasks"):
        prepare(RunConfig(workload="lenet3", compressor="piggyback"))


def test_missing_task_data_fails_before_training_and_names_the_files(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match=r"(?s)task 2 \('cifar10'\).*cifar-10-batches-py/data_batch_1"):
        prepare(_config("digits,cifar10", workload="vgg16_bn", data_root=str(tmp_path)))
    with pytest.raises(DatasetNotFoundError, match=r"nothing/train-images-idx3-ubyte"):
        prepare(_config("digits,idx:nothing", data_root=str(tmp_path)))


def test_dataset_must_be_task_one_and_inputs_must_match() -> None:
    with pytest.raises(TaskSequenceError, match="--dataset fashion-mnist disagrees with task 1 'digits'"):
        prepare(_config("digits,fashion-mnist", dataset="fashion-mnist"))
    with pytest.raises(TaskSequenceError, match="3-channel images to 'lenet3' but task 1 'digits' feeds 1"):
        prepare(_config("digits,cifar10"))
    with pytest.raises(IncompatibleWorkloadError, match="adds image-classification tasks to a CNN or MLP"):
        prepare(_config("digits,digits[0-4]", workload="lstm_char"))


def test_cli_refuses_tasks_for_a_single_task_compressor_and_writes_nothing(tmp_path: Path, capsys) -> None:
    from harness.cli import main

    code = main(["run", "--workload", "lenet3", "--compressor", "taylor", "--tasks", "digits,split-fashion-mnist:2",
                 "--results", str(tmp_path / "r")])  # fmt: skip
    assert code == 2 and "trains one task only" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---- config, suite and record ---------------------------------------------------------------------------------------
def test_identity_includes_tasks_only_when_given() -> None:
    plain, tasks = RunConfig(workload="lenet3"), RunConfig(workload="lenet3", tasks=["digits", "digits[0-4]"])
    assert "tasks" not in plain.identity() and tasks.identity()["tasks"] == ["digits", "digits[0-4]"]
    assert plain.config_hash() != tasks.config_hash()


def test_suite_tasks_list_is_one_sequence_and_a_list_of_lists_a_grid_axis() -> None:
    runs = expand_suite(
        {"runs": [{"workload": "lenet3", "compressor": "packnet", "tasks": ["digits", "split-digits:2"]}]}
    )
    assert len(runs) == 1 and to_run_config(runs[0], {}).tasks == ["digits", "split-digits:2"]
    runs = expand_suite(
        {"runs": [{"workload": "lenet3", "tasks": [["digits", "fashion-mnist"], "digits,digits[0-4]"]}]}
    )
    assert [to_run_config(r, {}).tasks for r in runs] == [["digits", "fashion-mnist"], ["digits", "digits[0-4]"]]


def test_task_datasets_have_their_own_baseline_cache_key() -> None:
    from harness.baseline import baseline_key

    first = prepare(_config("digits[0-4],digits[5-9]")).workload
    whole = prepare(RunConfig(workload="lenet3", dataset="digits", recipe_overrides=dict(TINY))).workload
    assert baseline_key(first, 0) != baseline_key(whole, 0) and "digits[0-4]" in baseline_key(first, 0)
