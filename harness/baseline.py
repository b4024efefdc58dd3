"""Dense baseline caching: trained once per (workload, dataset, profile, seed, recipe, options) and reused."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import torch
from torch import nn

from harness.progress import say
from harness.safe_load import load_tensors
from harness.store import ResultsStore
from harness.train import Trainer, atomic_torch_save
from workloads.base import Workload


def baseline_key(workload: Workload, seed: int) -> str:
    identity = {
        "workload": workload.info.name,
        "dataset": workload.dataset,
        "profile": workload.profile,
        "seed": seed,
        "recipe": workload.recipe.to_dict(),
        "options": workload.options.to_dict(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{workload.info.name}-{workload.dataset}-{workload.profile}-s{seed}-{digest}"


def get_baseline(
    workload: Workload, seed: int, device: str, store: ResultsStore, resume: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Load the cached dense model or train it with the workload's recipe (and cache it)."""
    key = baseline_key(workload, seed)
    path = store.baselines_dir / f"{key}.pt"
    torch.manual_seed(seed)
    model = workload.build_model()
    if path.is_file():
        state = load_tensors(path)
        model.load_state_dict(state["model"])
        say(f"[baseline] reusing cached dense model {path}")
        return model.to(device), {**state["info"], "cached": True, "path": str(path)}
    trainer = Trainer(workload, device=device, checkpoint_path=store.baselines_dir / f"{key}.ckpt", name="baseline")
    start = time.perf_counter()
    history = trainer.fit(model, resume=resume)
    info = {
        "key": key,
        "history": history,
        "train_seconds": time.perf_counter() - start,
        "recipe": workload.recipe.to_dict(),
    }
    atomic_torch_save({"model": model.state_dict(), "info": info}, path)
    (store.baselines_dir / f"{key}.ckpt").unlink(missing_ok=True)
    return model, {**info, "cached": False, "path": str(path)}
