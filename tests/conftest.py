"""Shared test options: paper-scale checks are opt-in with --run-paper; GPU tests skip without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-paper", action="store_true", default=False, help="run paper-scale checks (slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_paper = pytest.mark.skip(reason="paper-scale check: opt in with --run-paper")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "paper" in item.keywords and not config.getoption("--run-paper"):
            item.add_marker(skip_paper)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
