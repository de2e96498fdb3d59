"""audiossl.train.checkpoint and ema: atomic writes survive a crash, pruning, RNG states, weight EMA."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from audiossl.train import checkpoint as ckpt
from audiossl.models.ema import WeightEMA


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_last.pt"
    ckpt.save_checkpoint(path, {"num_updates": 1, "w": torch.ones(3)})
    real_save = torch.save

    def crash_after_some_bytes(obj, f, *args, **kwargs):
        real_save({"junk": torch.zeros(1000)}, f)  # bytes reach the temporary file ...
        raise OSError("disk full")  # ... and then the write dies

    monkeypatch.setattr(torch, "save", crash_after_some_bytes)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, {"num_updates": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = ckpt.load_checkpoint(path)
    assert state["num_updates"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"], "no temporary file left behind"


def test_load_checkpoint_rejects_other_files(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="x.pt: not an audiossl training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="cut.pt: cannot read"):
        ckpt.load_checkpoint(tmp_path / "cut.pt")


def test_link_and_prune(tmp_path):
    d = tmp_path / "checkpoints"
    for u in (10, 20, 30, 40):
        ckpt.save_checkpoint(d / f"checkpoint_{u}.pt", {"num_updates": u})
    ckpt.atomic_link(d / "checkpoint_40.pt", tmp_path / "checkpoint_last.pt")
    deleted = ckpt.prune_checkpoints(d, keep_last=2)
    assert sorted(p.name for p in deleted) == ["checkpoint_10.pt", "checkpoint_20.pt"]
    assert [u for u, _ in ckpt.numbered_checkpoints(d)] == [30, 40]
    (d / "checkpoint_40.pt").unlink()
    assert ckpt.load_checkpoint(tmp_path / "checkpoint_last.pt")["num_updates"] == 40
    with pytest.raises(AssertionError, match="keep_last"):
        ckpt.prune_checkpoints(d, keep_last=1)


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(2))
    ckpt.set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_weight_ema_follows_formula():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = WeightEMA(model, decay=0.9)
    before = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(5.0)
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, 0.9 * before + 0.1 * (before + 1.0))
    assert torch.equal(ema.module[1].running_mean, torch.full((3,), 5.0))  # buffers are copied
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
