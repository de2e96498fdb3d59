"""Helpers for the training-engine tests: a synthetic feature dump and a tiny toy config.

Imported by the test files of this directory (after putting it on sys.path); not a test module.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kaldiio
import numpy as np
import yaml

FEAT_DIM = 8


def make_dump(
    path: Path,
    num_utts: int = 24,
    num_classes: int = 3,
    frames: tuple[int, int] = (30, 60),
    seed: int = 0,
    multi_label: bool = False,
) -> Path:
    """A dump dir: feats.scp (class-dependent means so a classifier can learn), utt2label,
    labels.txt, utt2dur, stats.json."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels, durs = {}, {}
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as w:
        for i in range(num_utts):
            utt = f"utt{i:04d}"
            cls = [i % num_classes]
            if multi_label and i % 2:
                cls.append((i // 2) % num_classes)
            T = int(rng.integers(frames[0], frames[1] + 1))
            x = rng.normal(0.0, 1.0, (T, FEAT_DIM)).astype(np.float32)
            for c in set(cls):
                x[:, c % FEAT_DIM] += 2.0
            w[utt] = x
            labels[utt] = sorted(set(cls))
            durs[utt] = T * 0.01
    (path / "utt2label").write_text("".join(f"{u} {' '.join(f'c{c}' for c in cs)}\n" for u, cs in labels.items()))
    (path / "labels.txt").write_text("".join(f"{i} c{i} class {i}\n" for i in range(num_classes)))
    (path / "utt2dur").write_text("".join(f"{u} {d:.2f}\n" for u, d in durs.items()))
    stats = {"mean": 0.5, "std": 1.5, "num_frames": 0, "mean_per_bin": [0.0] * FEAT_DIM, "std_per_bin": [1.0] * FEAT_DIM}
    (path / "stats.json").write_text(json.dumps(stats))
    return path


def toy_config(tmp: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A raw toy_classifier config over ``tmp/train`` (and ``tmp/valid`` when it exists);
    ``sections`` update the defaults section by section."""
    cfg: dict[str, Any] = {
        "task": "toy_classifier",
        "model": {"hidden_dim": 8, "num_layers": 2, "loss": "ce"},
        "data": {"train": str(tmp / "train"), "valid": str(tmp / "valid") if (tmp / "valid").exists() else None,
                 "target_frames": 40, "batch_size": 4, "num_workers": 0},
        "optim": {"lr": 0.01, "max_updates": 12, "warmup_updates": 2, "weight_decay": 0.01},
        "trainer": {"log_interval": 2, "valid_interval": 4, "save_interval": 4, "keep_last": 2, "keep_best": 1,
                    "best_metric": "loss", "best_mode": "min"},
    }
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def state_of(model_pt: Path) -> dict:
    import torch

    return torch.load(model_pt, map_location="cpu", weights_only=False)["model"]


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), f"different keys: {sorted(set(a) ^ set(b))}"
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
