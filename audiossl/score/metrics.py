"""Classification metrics: mAP, ROC-AUC, d-prime, top-1 and top-5 accuracy, written with numpy.

How each number is computed (users compare ours with the papers', so here are the exact rules):

* **Average precision** of one class: rank the clips by the class's score, highest first; at every
  distinct score threshold ``s`` take precision P(s) and recall R(s) over the clips scoring >= s;
  AP = sum over thresholds of (R_n - R_{n-1}) * P_n. This is the non-interpolated definition of
  scikit-learn's ``average_precision_score``, which the AudioSet evaluation code of AST, Audio-MAE and
  EAT calls, so our mAP is directly comparable with their numbers.
  **Ties**: clips with equal scores enter together at one threshold (they share one precision value),
  so the order of tied clips never changes the result.
* **mAP** = mean of the per-class APs over the classes that have at least one positive clip in the
  evaluated set. A class without positives has no defined AP: it is NaN in ``per_class_ap`` and left
  out of the mean (a NaN-mean), and ``num_classes_scored`` says how many classes counted.
* **ROC-AUC** of one class: the probability that a random positive scores above a random negative,
  ties counting one half (the Mann-Whitney statistic; equal to the trapezoidal area under the ROC
  curve, as scikit-learn's ``roc_auc_score``). Undefined (NaN) for a class without positives or
  without negatives. **mAUC** = NaN-mean over classes.
* **d-prime** = sqrt(2) * Phi^-1(mAUC), Phi^-1 the inverse standard normal CDF, computed from the
  mean AUC as in the AudioSet papers (0 at AUC 0.5, infinite at AUC 1).
* **acc** (top-1 accuracy): a clip counts as correct when its highest-scoring class is one of its
  positive labels; ties in the top score go to the lowest class index. **top5_acc**: one of the five
  highest-scoring classes is positive. Clips without any positive label are left out of accuracy.

All metric values are fractions in [0, 1] (d-prime excepted); tables multiply by 100.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """A float64 2-D array from a numpy array or a torch tensor (on any device)."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    assert arr.ndim == 2, f"{name} must be (N, C), got shape {arr.shape}"
    return arr


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of one class (see module docstring); NaN when there is no positive.

    Args:
        scores: (N,) scores of the N clips for this class.
        positives: (N,) bool, True for the clips that carry the class.
    """
    num_pos = int(positives.sum())
    if num_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positives[order].astype(np.float64)
    tp = np.cumsum(p)  # true positives among the top k, k = 1..N
    # The last index of every run of equal scores is where one threshold ends.
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tp, k = tp[last_of_tie], np.flatnonzero(last_of_tie) + 1.0
    precision, recall = tp / k, tp / num_pos
    recall_step = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_step * precision))


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """ROC-AUC of one class by the rank-sum (Mann-Whitney) formula, ties as 1/2; NaN if undefined."""
    num_pos = int(positives.sum())
    num_neg = positives.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return math.nan
    # Average ranks (1-based) with ties sharing the mean of their ranks.
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    is_start = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(is_start)  # first sorted position of every run of equal scores
    ends = np.r_[starts[1:], s.size]  # one past its last position
    run = np.cumsum(is_start) - 1  # (N,) the run each sorted position belongs to
    ranks_sorted = ((starts + 1 + ends) / 2.0)[run]  # mean of the ranks start+1 .. end
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    rank_sum_pos = ranks[positives].sum()
    return float((rank_sum_pos - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def d_prime(auc: float) -> float:
    """sqrt(2) * inverse normal CDF of the AUC: 0 at 0.5, +-inf at 1 and 0, NaN for NaN."""
    if math.isnan(auc):
        return math.nan
    if auc >= 1.0:
        return math.inf
    if auc <= 0.0:
        return -math.inf
    return math.sqrt(2.0) * NormalDist().inv_cdf(auc)


def per_class_ap(scores: Any, targets: Any) -> np.ndarray:
    """(C,) average precision of every class; NaN for classes without positives."""
    s, t = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    assert s.shape == t.shape, f"scores {s.shape} and targets {t.shape} must have the same shape"
    pos = t > 0.5
    return np.array([average_precision(s[:, c], pos[:, c]) for c in range(s.shape[1])])


def per_class_auc(scores: Any, targets: Any) -> np.ndarray:
    """(C,) ROC-AUC of every class; NaN for classes without positives or without negatives."""
    s, t = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    assert s.shape == t.shape, f"scores {s.shape} and targets {t.shape} must have the same shape"
    pos = t > 0.5
    return np.array([roc_auc(s[:, c], pos[:, c]) for c in range(s.shape[1])])


def _nanmean(x: np.ndarray) -> float:
    return float(np.mean(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else math.nan


def topk_accuracy(scores: Any, targets: Any, k: int = 1) -> float:
    """Fraction of clips (with at least one positive) whose top-k classes include a positive."""
    s, t = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    pos = t > 0.5
    has_pos = pos.any(axis=1)
    if not has_pos.any():
        return math.nan
    s, pos = s[has_pos], pos[has_pos]
    k = min(k, s.shape[1])
    # Stable sort on the negated scores: among equal scores the lowest class index comes first.
    topk = np.argsort(-s, axis=1, kind="mergesort")[:, :k]  # (N, k)
    hit = np.take_along_axis(pos, topk, axis=1).any(axis=1)
    return float(hit.mean())


def confusion_matrix(scores: Any, targets: Any) -> np.ndarray:
    """(C, C) counts: row = true class (the first positive label), column = top-1 prediction."""
    s, t = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    num_classes = s.shape[1]
    has_pos = (t > 0.5).any(axis=1)
    true = np.argmax(t[has_pos] > 0.5, axis=1)
    pred = np.argmax(s[has_pos], axis=1)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def compute_metrics(scores: Any, targets: Any, multi_label: bool) -> dict[str, float]:
    """Set-level metrics from (N, C) scores and (N, C) multi-hot targets (numpy or torch).

    Returns (all floats): ``mAP``, ``mAUC``, ``d_prime``, ``num_classes_scored`` (classes with a
    positive), ``num_clips``; and, when ``multi_label`` is False, ``acc`` and ``top5_acc``.
    """
    s, t = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    assert s.shape == t.shape, f"scores {s.shape} and targets {t.shape} must have the same shape"
    ap = per_class_ap(s, t)
    auc = per_class_auc(s, t)
    mauc = _nanmean(auc)
    metrics = {
        "mAP": _nanmean(ap),
        "mAUC": mauc,
        "d_prime": d_prime(mauc),
        "num_classes_scored": float(np.sum(~np.isnan(ap))),
        "num_clips": float(s.shape[0]),
    }
    if not multi_label:
        metrics["acc"] = topk_accuracy(s, t, k=1)
        metrics["top5_acc"] = topk_accuracy(s, t, k=5)
    return metrics
