"""A linear classifier on fixed features: the linear probe of a frozen encoder (and of the baseline).

How a probe is fit (:func:`fit_linear`):

* **Standardisation**: every feature dimension is centred and scaled with the mean and standard
  deviation of the data the probe is fit on (a dimension with std below 1e-8 is only centred).
* **Model**: logits = x W + b. Single-label data: multinomial logistic regression (softmax
  cross-entropy; a clip with several positives gets the uniform distribution over them as its
  target); multi-label data: one-vs-rest logistic regression (sigmoid binary cross-entropy per class).
* **Objective**: mean over clips of the loss (summed over classes for one-vs-rest) plus
  ``l2 / 2 * ||W||^2`` (the bias is not penalised); ``l2`` is on this mean-loss scale, so it is
  ``1 / (C * N)`` of scikit-learn's ``C`` parameter.
* **Optimiser**: full-batch L-BFGS (strong Wolfe line search), at most ``max_iter`` iterations, in
  float64 on the CPU (float32 on a GPU): deterministic, no mini-batch noise. The largest L2 starts
  from zeros, each smaller one from the previous solution (the objective is strictly convex, so the
  minimum is the same; it takes about half the iterations).
* **L2 selection**: one fit on the train part per value of ``l2_grid``; the value whose probe
  scores best on the validation part by the main metric (accuracy single-label, mAP multi-label;
  :func:`audiossl.score.metrics.compute_metrics`) wins, ties going to the larger L2 (the simpler
  model). With ``refit_with_valid`` (the validation part was held out of the training set), the
  probe is then fit again on train + validation with that L2; otherwise the train fit is kept.

:func:`holdout_split` makes the validation part when a corpus has none: a seeded, stratified 20%.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from audiossl.score.metrics import compute_metrics

logger = logging.getLogger(__name__)

DEFAULT_L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
DEFAULT_MAX_ITER = 500


@dataclass
class LinearProbe:
    """A fitted linear probe; :meth:`predict_proba` applies it to raw (unstandardised) features.

    Attributes:
        mean, std: (D,) standardisation of the fitting data.
        weight: (D, C) on standardised features; bias: (C,).
        multi_label: sigmoid scores (True) or softmax scores (False).
        l2: the chosen L2 weight.
        metric: the selection metric ("acc" or "mAP").
        valid_metric: the chosen L2's validation metric.
        grid: {l2: validation metric} of every value tried.
        num_fit: clips of the final fit (train, or train + validation).
        num_iter: L-BFGS iterations of the final fit.
    """

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    multi_label: bool
    l2: float
    metric: str = "acc"
    valid_metric: float = math.nan
    grid: dict[float, float] = field(default_factory=dict)
    num_fit: int = 0
    num_iter: int = 0

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, D) raw features -> (N, C) float64 logits."""
        x = np.asarray(x, dtype=np.float64)
        assert x.ndim == 2 and x.shape[1] == self.weight.shape[0], (
            f"features must be (N, {self.weight.shape[0]}), got {x.shape}"
        )
        return ((x - self.mean) / self.std) @ self.weight + self.bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, D) raw features -> (N, C) float32 probabilities (sigmoid or softmax)."""
        z = torch.from_numpy(self.logits(x))
        p = torch.sigmoid(z) if self.multi_label else torch.softmax(z, dim=1)
        return p.float().numpy()


def main_metric(multi_label: bool) -> str:
    """The metric probes are selected by: mAP for multi-label data, accuracy for single-label."""
    return "mAP" if multi_label else "acc"


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std < 1e-8, 1.0, std)


def _fit_one(
    x: np.ndarray, y: np.ndarray, multi_label: bool, l2: float, max_iter: int, device: torch.device,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """One L-BFGS fit on (N, D) raw features and (N, C) multi-hot targets, from ``init`` (weight,
    bias of a fit on the same features) or from zeros.

    Returns (mean, std, weight (D, C), bias (C,), iterations).
    """
    mean, std = _standardiser(x)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    xs = torch.from_numpy((x - mean) / std).to(device=device, dtype=dtype)  # (N, D)
    t = torch.from_numpy(np.asarray(y, dtype=np.float64)).to(device=device, dtype=dtype)  # (N, C)
    if not multi_label:
        t = t / t.sum(dim=1, keepdim=True).clamp_min(1.0)  # a distribution over the positives
    N, D = xs.shape
    C = t.shape[1]
    if init is None:
        w = torch.zeros(D, C, dtype=dtype, device=device, requires_grad=True)
        b = torch.zeros(C, dtype=dtype, device=device, requires_grad=True)
    else:
        w = torch.tensor(init[0], dtype=dtype, device=device, requires_grad=True)
        b = torch.tensor(init[1], dtype=dtype, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4 + 1,
                            history_size=20, tolerance_grad=1e-7, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = xs @ w + b  # (N, C)
        if multi_label:
            data = F.binary_cross_entropy_with_logits(z, t, reduction="sum") / N
        else:
            data = -(t * torch.log_softmax(z, dim=1)).sum() / N
        loss = data + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    n_iter = int(opt.state[w].get("n_iter", 0))
    if n_iter >= max_iter:
        logger.debug("L-BFGS (l2 %g) stopped at the iteration cap %d", l2, max_iter)
    return mean, std, w.detach().double().cpu().numpy(), b.detach().double().cpu().numpy(), n_iter


def fit_linear(
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
    multi_label: bool,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    refit_with_valid: bool = False,
    max_iter: int = DEFAULT_MAX_ITER,
    device: str | torch.device = "cpu",
) -> LinearProbe:
    """Fit a linear probe, choosing its L2 weight on the validation data (module docstring).

    Args:
        train_x: (N, D) features; train_y: (N, C) multi-hot targets.
        valid_x: (M, D); valid_y: (M, C): the data the L2 weight is chosen on.
        multi_label: one-vs-rest sigmoid (True) or softmax (False).
        l2_grid: L2 weights to try.
        refit_with_valid: fit the final probe on train + validation (when the validation part was
            held out of the training set).
        max_iter: L-BFGS iteration cap per fit.
    """
    train_x, valid_x = np.asarray(train_x, dtype=np.float64), np.asarray(valid_x, dtype=np.float64)
    train_y, valid_y = np.asarray(train_y, dtype=np.float64), np.asarray(valid_y, dtype=np.float64)
    assert train_x.ndim == 2 and train_y.ndim == 2 and train_x.shape[0] == train_y.shape[0], (
        f"train features {train_x.shape} and targets {train_y.shape} must be (N, D) and (N, C)"
    )
    assert valid_x.shape[1:] == train_x.shape[1:] and valid_y.shape[1:] == train_y.shape[1:], (
        f"valid features {valid_x.shape} / targets {valid_y.shape} do not match train {train_x.shape} / {train_y.shape}"
    )
    assert valid_x.shape[0] == valid_y.shape[0] and valid_x.shape[0] > 0, "the validation part is empty"
    assert l2_grid, "give at least one L2 weight"
    device = torch.device(device)
    metric = main_metric(multi_label)
    fits: dict[float, tuple] = {}
    grid: dict[float, float] = {}
    init = None
    for l2 in sorted((float(v) for v in l2_grid), reverse=True):
        fit = _fit_one(train_x, train_y, multi_label, l2, max_iter, device, init)
        init = fit[2], fit[3]
        probe = LinearProbe(*fit[:4], multi_label=multi_label, l2=l2)
        value = compute_metrics(probe.predict_proba(valid_x), valid_y, multi_label)[metric]
        if math.isnan(value):
            raise ValueError(f"the validation part gives no {metric} (no clip with a positive label): cannot choose the L2 weight")
        fits[l2], grid[l2] = fit, float(value)
        logger.debug("l2 %g: valid %s %.4f (%d iterations)", l2, metric, value, fit[4])
    best = max(grid, key=lambda l2: (grid[l2], l2))  # ties: the larger L2
    if refit_with_valid:
        fit = _fit_one(np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y]),
                       multi_label, best, max_iter, device)  # other features' standardisation: from zeros
        num_fit = train_x.shape[0] + valid_x.shape[0]
    else:
        fit, num_fit = fits[best], train_x.shape[0]
    return LinearProbe(*fit[:4], multi_label=multi_label, l2=best, metric=metric, valid_metric=grid[best],
                       grid=dict(sorted(grid.items())), num_fit=num_fit, num_iter=fit[4])


def holdout_split(targets: np.ndarray, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, stratified hold-out: (train indices, valid indices), each sorted.

    Each clip is stratified by its rarest positive label (its only one for single-label data;
    clips without a positive form one more stratum). Of a stratum of n clips, ``round(fraction * n)``
    go to validation, but at least one clip of every stratum stays in training.

    Args:
        targets: (N, C) multi-hot.
        fraction: the share held out (0.2 = 20%).
        seed: the shuffle within each stratum.
    """
    assert 0.0 < fraction < 1.0, f"fraction must be in (0, 1), got {fraction}"
    pos = np.asarray(targets) > 0.5  # (N, C)
    counts = pos.sum(axis=0)  # (C,)
    rarity = np.where(pos, counts[None, :], np.iinfo(np.int64).max)  # (N, C) count of each positive label
    stratum = np.where(pos.any(axis=1), np.argmin(rarity, axis=1), -1)  # (N,) rarest label, lowest index on ties
    rng = np.random.default_rng(seed)
    valid: list[int] = []
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        take = min(int(math.floor(fraction * len(members) + 0.5)), len(members) - 1)
        if take > 0:
            valid.extend(rng.permutation(members)[:take].tolist())
    valid_idx = np.array(sorted(valid), dtype=np.int64)
    if valid_idx.size == 0:
        raise ValueError(
            f"cannot hold out {fraction:.0%} of {len(stratum)} training clips for validation: no class has "
            "enough clips; give a separate validation set"
        )
    train_idx = np.setdiff1d(np.arange(len(stratum)), valid_idx)
    return train_idx, valid_idx
