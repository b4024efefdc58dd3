"""Task sequences: the ordered tasks a multi-task (continual) compressor adds to one network, e.g. PackNet
(arXiv 1711.05769) and Piggyback (arXiv 1801.06519).

``--tasks`` (or a suite entry's ``tasks: [...]``) names the sequence, comma-separated, in order. Each item is:

* ``NAME``: a registered image dataset (``python -m harness ls datasets``): ``digits``, ``fashion-mnist``,
  ``mnist``, ``cifar10``, ..., and the papers' fine-grained sets ``cubs``, ``stanford-cars``, ``flowers102``,
  ``wikiart``, ``sketch``, ``places365`` (real layouts under ``--data-root``, see workloads/data/fine_grained.py);
* ``NAME[a-b]`` or ``NAME[a,b,c]``: the classes ``a..b`` (or the ones listed) of a dataset, labels remapped to
  0..k-1 in ascending order of the original label;
* ``split-NAME:K``: K tasks of ``classes / K`` consecutive classes each (the "split" continual benchmark, e.g.
  ``split-fashion-mnist:5`` = five 2-class tasks); K must divide the class count;
* ``idx:DIR``: MNIST-format IDX files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-...``) in ``--data-root/DIR``, e.g. KMNIST; its classes are the distinct training labels (remapped to
  0..k-1). ``idx:DIR[a-b]`` and ``split-idx:DIR:K`` work too.

Task 1 is the run's own dataset: the workload's dense baseline is trained on it (the papers' ImageNet-pretrained
backbone). ``--dataset`` may be left out (it becomes task 1) or must name task 1. Every task is a workload of the
run's architecture, profile, options and recipe on its own data, with its own head size and metric. Pre-flight
(:func:`prepare_tasks`, called by ``harness.runner.prepare``) refuses a sequence given to a compressor that is not
multi-task, a multi-task compressor without one, and a task whose data is missing (naming the files) before any
training: every task's workload is built and its readers are touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.base import Workload

SPLIT = re.compile(r"^split-(?P<source>.+):(?P<k>\d+)$")
SUBSET = re.compile(r"^(?P<source>[^\[\]]+)\[(?P<classes>[^\]]*)\]$")
IDX_PREFIX = "idx:"
MULTITASK_KIND = "multitask"


class TaskSequenceError(ValueError):
    """A task sequence that cannot run (bad syntax, wrong compressor kind, disagreeing --dataset)."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of a sequence, as parsed: ``name`` (canonical, e.g. ``digits[0-4]``), the dataset it reads
    (a registered name or ``idx:DIR``), the original classes it keeps (None = all), and the item it came from."""

    name: str
    dataset: str
    classes: tuple[int, ...] | None
    item: str


@dataclass
class Task:
    """A task ready to train: its index in the sequence (0 = task 1, the baseline's), spec and workload."""

    index: int
    spec: TaskSpec
    workload: Workload

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        """What the task is, for the run record: dataset, classes, sizes, source, metric and recipe."""
        wl: Any = self.workload
        train, val = wl.split("train"), wl.split("val")
        return {
            "index": self.index,
            "name": self.spec.name,
            "item": self.spec.item,
            "dataset": self.spec.dataset,
            "classes": list(self.spec.classes) if self.spec.classes is not None else "all",
            "num_classes": wl.num_classes,
            "train_samples": len(train),
            "val_samples": len(val),
            "source": wl.spec.source,
            "metric": wl.info.metric,
            "recipe": wl.recipe.to_dict(),
            "image_size": wl.image_size,
        }


# ---- syntax ---------------------------------------------------------------------------------------------------------
def split_items(text: str) -> list[str]:
    """``"a,b[0,1],c"`` -> ``["a", "b[0,1]", "c"]``: commas inside brackets belong to a class list."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return [item for item in items if item]


def normalise(value: Any) -> list[str]:
    """A sequence from the CLI string or a suite list (whose items may themselves hold commas)."""
    if value is None:
        return []
    if isinstance(value, str):
        return split_items(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [item for v in value for item in split_items(v)]
    raise TaskSequenceError(f"tasks must be a comma-separated string or a list of task names, got {value!r}")


def _parse_classes(text: str, item: str) -> tuple[int, ...]:
    classes: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise TaskSequenceError(f"task {item!r}: bad class list {text!r}; use e.g. [0-4] or [0,3,7]")
        classes.extend(range(int(low), int(high) + 1) if sep else [int(low)])
    if not classes or len(set(classes)) != len(classes):
        raise TaskSequenceError(f"task {item!r}: the class list {text!r} is empty or repeats a class")
    return tuple(sorted(classes))


def _class_text(classes: tuple[int, ...]) -> str:
    contiguous = list(classes) == list(range(classes[0], classes[-1] + 1))
    return f"{classes[0]}-{classes[-1]}" if contiguous and len(classes) > 1 else ",".join(map(str, classes))


def _spec(source: str, classes: tuple[int, ...] | None, labels: tuple[int, ...], item: str) -> TaskSpec:
    """Every class of a dataset is the dataset itself (one name, one baseline cache key)."""
    if classes is None or classes == labels:
        return TaskSpec(source, source, None if labels == tuple(range(len(labels))) else labels, item)
    return TaskSpec(f"{source}[{_class_text(classes)}]", source, classes, item)


def parse_sequence(items: list[str], num_classes: Any) -> list[TaskSpec]:
    """TaskSpecs of a sequence; ``num_classes(dataset)`` gives a dataset's class labels (a tuple) for ``split-``."""
    specs: list[TaskSpec] = []
    for item in items:
        split = SPLIT.match(item)
        subset = SUBSET.match(item)
        if split:
            source, k = split["source"], int(split["k"])
            labels = num_classes(source)
            if k < 1 or len(labels) % k:
                valid = [d for d in range(1, len(labels) + 1) if len(labels) % d == 0]
                raise TaskSequenceError(
                    f"task {item!r}: {len(labels)} classes cannot be split evenly into {k} tasks; use K in {valid}"
                )
            size = len(labels) // k
            specs += [_spec(source, tuple(labels[j * size : (j + 1) * size]), labels, item) for j in range(k)]
        elif subset:
            source, classes = subset["source"].strip(), _parse_classes(subset["classes"], item)
            labels = num_classes(source)
            unknown = sorted(set(classes) - set(labels))
            if unknown:
                raise TaskSequenceError(f"task {item!r}: {source} has no class(es) {unknown} (it has {len(labels)})")
            specs.append(_spec(source, classes, labels, item))
        else:
            specs.append(_spec(item, None, num_classes(item), item))  # an unknown dataset raises, naming the choices
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TaskSequenceError(f"the task sequence repeats {repeated}; each task must appear once")
    return specs


# ---- MNIST-format files given by the user ---------------------------------------------------------------------------
def idx_spec(dataset: str, data_root: str | None) -> Any:
    """The ImageDatasetSpec of ``idx:DIR`` (MNIST-format files in ``--data-root/DIR``): classes are the distinct
    training labels; mean/std are the training images' own. Missing files raise naming every path looked for."""
    import torch

    from workloads.data.errors import DatasetNotFoundError
    from workloads.data.images import ImageDatasetSpec, ImageSet, _find_idx, read_idx

    folder = dataset[len(IDX_PREFIX) :]
    how = f"place the four MNIST-format IDX files (train-images-idx3-ubyte[.gz], ...) in DIR/{folder}"
    if not folder or data_root is None:
        where = f"<--data-root>/{folder or 'DIR'}/train-images-idx3-ubyte"
        raise DatasetNotFoundError(dataset, [where], f"{how} and pass --data-root DIR")
    dirs = [Path(data_root) / folder]

    def reader(split: str, root: str | None = None, size: int | None = None) -> ImageSet:
        image_path, label_path = _find_idx(dataset, dirs, how, split)
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            from workloads.data.errors import DatasetFormatError
            from workloads.data.images import IDX_EXPECTED

            raise DatasetFormatError(image_path, IDX_EXPECTED, f"images {images.shape} do not match {labels.shape}")
        return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype("int64")))

    train = reader("train")
    reader("val")  # pre-flight: both splits exist
    pixels = train.images.float().div(255.0)  # type: ignore[union-attr]
    labels = tuple(int(v) for v in torch.unique(train.labels).tolist())
    spec = ImageDatasetSpec(
        dataset, len(labels), 1, int(pixels.shape[-1]), (float(pixels.mean()),), (float(pixels.std()),),
        reader, f"MNIST-format IDX files in {dirs[0]}",
    )  # fmt: skip
    return spec, labels


# ---- building the tasks ---------------------------------------------------------------------------------------------
class _Labels:
    """``dataset -> its class labels`` for the parser: registered specs, or the idx files' own labels."""

    def __init__(self, data_root: str | None) -> None:
        self.data_root = data_root
        self.idx: dict[str, Any] = {}

    def __call__(self, dataset: str) -> tuple[int, ...]:
        from workloads.data.images import IMAGE_DATASETS

        if dataset.startswith(IDX_PREFIX):
            if dataset not in self.idx:
                self.idx[dataset] = idx_spec(dataset, self.data_root)
            return tuple(self.idx[dataset][1])
        if dataset not in IMAGE_DATASETS:
            raise TaskSequenceError(
                f"unknown task dataset {dataset!r}; use one of {', '.join(sorted(IMAGE_DATASETS))}, idx:DIR "
                f"(MNIST-format files under --data-root), NAME[a-b] or split-NAME:K"
            )
        return tuple(range(IMAGE_DATASETS[dataset].num_classes))


def check_kind(compressor: Any, items: list[str]) -> None:
    """A sequence needs a multi-task compressor and a multi-task compressor needs a sequence."""
    info = compressor.info
    if items and info.kind != MULTITASK_KIND:
        from compressors import COMPRESSORS

        multitask = [n for n in COMPRESSORS.names() if _kind_of(COMPRESSORS, n) == MULTITASK_KIND]
        raise TaskSequenceError(
            f"--tasks was given, but compressor {info.name!r} (kind {info.kind!r}) trains one task only; "
            f"a task sequence needs a multi-task compressor: {', '.join(multitask) or 'none registered'}. "
            f"Drop --tasks or pick one of those."
        )
    if not items and info.kind == MULTITASK_KIND:
        raise TaskSequenceError(
            f"compressor {info.name!r} adds tasks one after another and needs a task sequence: pass e.g. "
            f"--tasks fashion-mnist,split-digits:2 (task 1 is the baseline's dataset; see README, 'Task sequences')"
        )


def _kind_of(registry: Any, name: str) -> str | None:
    try:
        return str(registry.get(name).info.kind)
    except Exception:  # noqa: BLE001 - a broken plug-in is not a multi-task compressor
        return None


def task_specs(config: Any, labels: _Labels | None = None) -> list[TaskSpec]:
    """The parsed sequence of a run (empty when it has none); checks ``--dataset`` against task 1."""
    items = normalise(config.tasks)
    if not items:
        return []
    specs = parse_sequence(items, labels or _Labels(config.data_root))
    if config.dataset is not None and config.dataset != specs[0].name:
        raise TaskSequenceError(
            f"--dataset {config.dataset} disagrees with task 1 {specs[0].name!r}: task 1 is the baseline's dataset. "
            f"Drop --dataset or list {config.dataset} first in --tasks"
        )
    return specs


def build_task(index: int, spec: TaskSpec, workload_cls: Any, kwargs: dict[str, Any], labels: _Labels) -> Task:
    """Task ``index`` as a workload of ``workload_cls`` (same profile, options, recipe) on the task's data."""
    from workloads.vision import ImageClassificationWorkload

    if not issubclass(workload_cls, ImageClassificationWorkload):
        raise TaskSequenceError(
            f"task sequences are image-classification tasks; workload {workload_cls.info.name!r} is "
            f"{workload_cls.info.task}. Use an image classifier (e.g. vgg16_bn, resnet50, lenet3)."
        )
    if spec.dataset.startswith(IDX_PREFIX):
        if "mnist" not in workload_cls.info.datasets:
            raise TaskSequenceError(
                f"task {spec.name!r}: workload {workload_cls.info.name!r} takes no MNIST-format data"
            )
        labels(spec.dataset)
        data_spec, all_labels = labels.idx[spec.dataset]
        workload = workload_cls(dataset="mnist", **kwargs)
        workload.use_task_data(spec.name, spec.classes or all_labels, spec=data_spec)
    else:
        workload = workload_cls(dataset=spec.dataset, **kwargs)
        if spec.classes is not None:
            workload.use_task_data(spec.name, spec.classes)
    return Task(index, spec, workload)


class TaskDataError(FileNotFoundError):
    """A task's data is missing or malformed; the message names the task and the files looked for."""


def touch(task: Task) -> None:
    """Read both splits now (pre-flight): a missing file fails before any training and names itself."""
    from workloads.data.errors import DatasetFormatError, DatasetNotFoundError

    try:
        for split in ("train", "val"):
            task.workload.split(split)  # type: ignore[attr-defined]
    except (DatasetNotFoundError, DatasetFormatError) as exc:
        raise TaskDataError(f"task {task.index + 1} ({task.name!r}) cannot be read: {exc}") from exc


def prepare_tasks(config: Any, compressor: Any, workload_cls: Any, kwargs: dict[str, Any]) -> list[Task]:
    """Pre-flight of a run's sequence (``[]`` for a single-task run), in the order that gives the clearest error:
    the compressor's kind, the syntax, the compressor's fit to the workload, then every task's data."""
    items = normalise(config.tasks)
    check_kind(compressor, items)
    if not items:
        return []
    labels = _Labels(config.data_root)
    specs = task_specs(config, labels)
    compressor.check_compatible(workload_cls(dataset=None, **kwargs))
    tasks = [build_task(0, specs[0], workload_cls, kwargs, labels)]
    for index, spec in enumerate(specs[1:], start=1):
        tasks.append(_same_input(tasks[0], build_task(index, spec, workload_cls, kwargs, labels), workload_cls, kwargs))
    for task in tasks:
        touch(task)
    return tasks


def _same_input(first: Task, task: Task, workload_cls: Any, kwargs: dict[str, Any]) -> Task:
    """One network serves every task, so every task takes task 1's input: its resolution is pinned to task 1's
    (``recipe.image_size``, recorded in the task's recipe); a different channel count is refused."""
    a, b = first.workload, task.workload
    if a.model_channels != b.model_channels:  # type: ignore[attr-defined]
        raise TaskSequenceError(
            f"task {task.name!r} feeds {b.model_channels}-channel images to {workload_cls.info.name!r} but task 1 "  # type: ignore[attr-defined]
            f"{first.name!r} feeds {a.model_channels}: the tasks of one network must share the input shape"  # type: ignore[attr-defined]
        )
    if a.image_size == b.image_size:  # type: ignore[attr-defined]
        return task
    overrides = {**(kwargs.get("recipe_overrides") or {}), "image_size": a.image_size}  # type: ignore[attr-defined]
    labels = _Labels(kwargs.get("data_root"))
    return build_task(task.index, task.spec, workload_cls, {**kwargs, "recipe_overrides": overrides}, labels)
