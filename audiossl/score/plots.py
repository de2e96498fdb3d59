"""PNG plots of scoring results (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

logger = logging.getLogger(__name__)


def plot_per_class_ap(
    ap: Sequence[float], names: Sequence[str], out: str | Path, top: int = 20, title: str = ""
) -> Path:
    """Horizontal bars of per-class AP: all classes when there are at most 2 * ``top``, else the
    ``top`` best and the ``top`` worst (AudioSet's 527). Classes with NaN AP (no positives) are left out.
    """
    ap = np.asarray(ap, dtype=np.float64)
    keep = np.flatnonzero(~np.isnan(ap))
    order = keep[np.argsort(-ap[keep], kind="mergesort")]
    if len(order) > 2 * top:
        shown = np.r_[order[:top], order[-top:]]
        split = top
    else:
        shown, split = order, None
    height = max(3.0, 0.22 * len(shown) + 1.2)
    fig, axis = plt.subplots(figsize=(8, height))
    y = np.arange(len(shown))
    colors = ["tab:blue" if split is None or i < split else "tab:red" for i in range(len(shown))]
    axis.barh(y, ap[shown] * 100, color=colors)
    axis.set_yticks(y, [names[i] for i in shown], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("average precision (%)")
    axis.set_xlim(0, 100)
    if split is not None:
        axis.axhline(split - 0.5, color="gray", linewidth=0.8, linestyle="--")
    mean_ap = float(np.mean(ap[keep])) * 100 if len(keep) else math.nan
    suffix = f" (top and bottom {top} of {len(keep)})" if split is not None else ""
    axis.set_title(f"{title} per-class AP, mAP {mean_ap:.1f}{suffix}".strip(), fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def plot_confusion(cm: np.ndarray, names: Sequence[str], out: str | Path, title: str = "") -> Path:
    """A confusion matrix (rows: true class, columns: predicted), each row normalised to 1."""
    cm = np.asarray(cm, dtype=np.float64)
    C = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = min(4.0 + 0.18 * C, 16.0)
    fig, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fontsize = 8 if C <= 20 else 5
    axis.set_xticks(range(C), names, rotation=90, fontsize=fontsize)
    axis.set_yticks(range(C), names, fontsize=fontsize)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if C <= 12:
        for i in range(C):
            for j in range(C):
                if cm[i, j]:
                    axis.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                              color="white" if frac[i, j] > 0.5 else "black")
    accuracy = np.trace(cm) / max(cm.sum(), 1) * 100
    axis.set_title(f"{title} confusion (row-normalised), accuracy {accuracy:.1f}%".strip(), fontsize=9)
    fig.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    logger.info("wrote %s", out)
    return out
