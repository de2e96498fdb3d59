"""audiossl.train.optim: warm-up + cosine values, weight-decay groups, layer-wise LR decay."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from audiossl.data.dataset import DataInfo
from audiossl.tasks.toy import ToyClassifier, ToyModelConfig
from audiossl.train.config import OptimConfig
from audiossl.train.optim import WarmupCosineScheduler, build_optimizer, lr_at, param_groups


def test_warmup_is_linear_from_zero_and_cosine_reaches_min_lr():
    cfg = OptimConfig(lr=1.0, warmup_updates=10, max_updates=110, min_lr=0.1)
    assert lr_at(1, cfg) == pytest.approx(0.1)
    assert lr_at(5, cfg) == pytest.approx(0.5)
    assert lr_at(10, cfg) == pytest.approx(1.0)  # warm-up ends at the peak
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half-way down the cosine: (peak + min) / 2
    assert lr_at(35, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lr_at(110, cfg) == pytest.approx(0.1)
    values = [lr_at(n, cfg) for n in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:])), "the cosine must decrease monotonically"


def test_no_warmup_starts_at_peak():
    cfg = OptimConfig(lr=2e-3, warmup_updates=0, max_updates=100, min_lr=0.0)
    assert lr_at(1, cfg) == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi / 100)))


def test_scheduler_sets_group_lrs_with_scale():
    model = nn.Linear(3, 2)
    cfg = OptimConfig(lr=1.0, warmup_updates=4, max_updates=8)
    opt = torch.optim.AdamW([{"params": [model.weight], "lr_scale": 0.5}, {"params": [model.bias], "lr_scale": 1.0}])
    sched = WarmupCosineScheduler(opt, cfg)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.125, 0.25])  # the first update's LR
    sched.set_update(3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 1.0])
    state = sched.state_dict()
    sched2 = WarmupCosineScheduler(opt, cfg)
    sched2.load_state_dict(state)
    assert sched2.get_lr() == pytest.approx(1.0)


class WithNoDecay(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.token = nn.Parameter(torch.zeros(1, 1, 4))
        self.frozen = nn.Parameter(torch.zeros(3), requires_grad=False)

    def no_weight_decay(self):
        return {"token"}


def _decay_of(groups):
    return {n: g["weight_decay"] for g in groups for n in g["names"]}


def test_weight_decay_groups():
    model = WithNoDecay()
    wd = _decay_of(param_groups(model, OptimConfig(weight_decay=0.05)))
    assert wd == {"lin.weight": 0.05, "lin.bias": 0.0, "norm.weight": 0.0, "norm.bias": 0.0, "token": 0.0}
    wd = _decay_of(param_groups(model, OptimConfig(weight_decay=0.05, decay_norm_and_bias=True)))
    # fairseq-style: everything decays but what the model excludes by name
    assert wd == {"lin.weight": 0.05, "lin.bias": 0.05, "norm.weight": 0.05, "norm.bias": 0.05, "token": 0.0}


def test_layer_decay_scales_by_depth():
    model = ToyClassifier(ToyModelConfig(hidden_dim=4, num_layers=3), DataInfo(num_classes=2, feat_dim=5))
    cfg = OptimConfig(lr=1.0, layer_decay=0.5, max_updates=10)
    scales = {n: g["lr_scale"] for g in param_groups(model, cfg) for n in g["names"]}
    # num_layers = 3: input (id 0) 0.5^4, block i (id i + 1) 0.5^(3 - i), head (id 4) 1
    assert scales["encoder.proj.weight"] == pytest.approx(0.5**4)
    assert scales["encoder.layers.0.conv.weight"] == pytest.approx(0.5**3)
    assert scales["encoder.layers.2.conv.bias"] == pytest.approx(0.5**1)
    assert scales["head.weight"] == pytest.approx(1.0)
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    sched = WarmupCosineScheduler(opt, cfg)
    sched.set_update(0)
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    assert lrs["encoder.proj.weight"] == pytest.approx(lr_at(1, cfg) * 0.5**4)
    assert opt.defaults["foreach"] is True  # CPU: the foreach implementation
    no_decay = param_groups(model, OptimConfig(layer_decay=1.0))
    assert {g["lr_scale"] for g in no_decay} == {1.0}


def test_layer_id_out_of_range_is_an_error():
    class Bad(WithNoDecay):
        num_layers = 1

        def layer_id(self, name):
            return 7

    with pytest.raises(AssertionError, match="layer_id"):
        param_groups(Bad(), OptimConfig(layer_decay=0.9))


def test_epoch_schedule_sets_updates_from_the_train_set():
    from audiossl.train.optim import resolve_epoch_schedule

    cfg = OptimConfig(max_updates=1000, warmup_updates=100, max_epochs=30, warmup_epochs=2.5)
    resolve_epoch_schedule(cfg, updates_per_epoch=7)
    assert (cfg.max_updates, cfg.warmup_updates) == (210, 18)  # round(17.5) = 18
    cfg = OptimConfig(max_updates=1000, warmup_updates=100)  # no epochs: the update counts stay
    resolve_epoch_schedule(cfg, updates_per_epoch=7)
    assert (cfg.max_updates, cfg.warmup_updates) == (1000, 100)
    cfg = OptimConfig(max_epochs=0.01, warmup_epochs=0.01)
    resolve_epoch_schedule(cfg, updates_per_epoch=3)
    assert (cfg.max_updates, cfg.warmup_updates) == (1, 1)  # never zero: zero means "export only"
    with pytest.raises(ValueError, match="max_epochs and optim.warmup_epochs must be >= 0"):
        resolve_epoch_schedule(OptimConfig(max_epochs=-1), updates_per_epoch=3)


class FairseqCosine:
    """fairseq's cosine scheduler for one group, as its documentation states it: ``lr`` the group's
    peak, ``min_lr`` lowered to the peak when above it, warm-up from min_lr, ``step_update(k)`` after
    the k-th update sets the LR of the next one."""

    def __init__(self, peak, min_lr, warmup, max_update):
        self.peak, self.min_lr = peak, min(min_lr, peak)
        self.warmup, self.period = warmup, max_update - warmup
        self.lr = self.min_lr

    def step_update(self, k):
        if k < self.warmup:
            self.lr = self.min_lr + k * (self.peak - self.min_lr) / self.warmup
        else:
            t = (k - self.warmup) / self.period
            self.lr = self.min_lr + 0.5 * (self.peak - self.min_lr) * (1 + math.cos(math.pi * t))


def test_fairseq_group_schedule_follows_each_groups_own_cosine():
    model = ToyClassifier(ToyModelConfig(hidden_dim=4, num_layers=3), DataInfo(num_classes=2, feat_dim=5))
    cfg = OptimConfig(lr=1e-4, min_lr=2e-5, layer_decay=0.5, warmup_updates=5, max_updates=30,
                      group_schedule="fairseq")
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales == pytest.approx([0.5**4, 0.5**3, 0.5**2, 0.5, 1.0])
    sched = WarmupCosineScheduler(opt, cfg)
    ref = {s: FairseqCosine(1e-4 * s, 2e-5, 5, 30) for s in scales}
    for n in range(1, 31):  # the n-th update
        for s, r in ref.items():
            if n > 1:
                r.step_update(n - 1)
            got = [g["lr"] for g in opt.param_groups if g["lr_scale"] == s]
            assert got == pytest.approx([r.lr] * len(got), rel=1e-12, abs=0), (n, s)
        assert sched.get_lr() == pytest.approx(ref[1.0].lr)
        sched.set_update(n)
    # the groups peaking below min_lr (1e-4 x 0.5^4, 1e-4 x 0.5^3) keep their peak; the others end
    # near min_lr itself, where the scaled schedule ends at min_lr x scale
    assert ref[0.5**4].lr == pytest.approx(1e-4 * 0.5**4) and ref[0.5**3].lr == pytest.approx(1e-4 * 0.5**3)
    assert ref[0.5].lr == pytest.approx(2e-5, rel=1e-2)
    scaled = OptimConfig(lr=1e-4, min_lr=2e-5, layer_decay=0.5, warmup_updates=5, max_updates=30)
    assert lr_at(30, scaled) * 0.5 == pytest.approx(1e-5)


def test_fairseq_group_schedule_starts_warmup_at_min_lr():
    cfg = OptimConfig(lr=1.0, min_lr=0.1, warmup_updates=4, max_updates=8, group_schedule="fairseq")
    opt = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(2))], "lr_scale": 1.0}])
    sched = WarmupCosineScheduler(opt, cfg)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # update 1: min_lr (scaled: 0.25)
    sched.set_update(4)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)  # update 5, the first after warm-up: the peak
