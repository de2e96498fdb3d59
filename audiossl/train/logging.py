"""Training logs: console + ``train.log`` lines, TensorBoard scalars and ``metrics.jsonl``.

* :func:`setup_logging` sends the same lines to the console and ``exp/<tag>/train.log`` (rank 0;
  other ranks print warnings only, tagged with their rank).
* :class:`MetricsWriter` writes every logged scalar twice: as TensorBoard scalars under
  ``exp/<tag>/tensorboard/`` (``train/<name>``, ``valid/<name>``) and as one JSON line per log event in
  ``exp/<tag>/metrics.jsonl`` (``{"split": "train", "update": 100, "epoch": 1, "time": ..., "loss": ...}``).
  On resume, both are cut back to the resumed update so curves have no duplicated stretch.
* :func:`read_metrics` and :func:`plot_metrics` turn them into PNG curves (``bin/plot_training.py``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
_HANDLER_TAG = "_audiossl_handler"


def setup_logging(log_file: str | Path | None = None, rank: int = 0, level: int = logging.INFO) -> None:
    """Root logger: console (stderr) for rank 0 at ``level``, warnings only for other ranks; rank 0
    also appends to ``log_file``. Calling it again replaces the handlers it added before."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, False):
            root.removeHandler(h)
            h.close()
    fmt = LOG_FORMAT if rank == 0 else f"[rank {rank}] {LOG_FORMAT}"
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level if rank == 0 else logging.WARNING)
    handlers: list[logging.Handler] = [console]
    if log_file is not None and rank == 0 and not _stderr_is(log_file):
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        handlers[-1].setLevel(level)
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT if rank == 0 else fmt))
        setattr(h, _HANDLER_TAG, True)
        root.addHandler(h)
    root.setLevel(level)


def _stderr_is(path: str | Path) -> bool:
    """True when stderr already goes to ``path`` (run.pl/queue.pl logging into the same file): then
    the console lines are the file's lines and a second handler would write each line twice."""
    try:
        return os.path.samestat(os.fstat(sys.stderr.fileno()), os.stat(path))
    except (OSError, ValueError, AttributeError):
        return False


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d}d{h:02d}:{m:02d}:{s:02d}" if d else f"{h}:{m:02d}:{s:02d}"


class MetricsWriter:
    """TensorBoard + metrics.jsonl for rank 0 (see module docstring); ``resume_update`` cuts both back."""

    def __init__(self, exp_dir: str | Path, resume_update: int = 0):
        self.exp_dir = Path(exp_dir)
        self.jsonl_path = self.exp_dir / "metrics.jsonl"
        if self.jsonl_path.is_file():
            self._truncate_jsonl(resume_update)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(
            log_dir=str(self.exp_dir / "tensorboard"), purge_step=resume_update + 1 if resume_update > 0 else None
        )
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")

    def _truncate_jsonl(self, resume_update: int) -> None:
        kept = []
        with open(self.jsonl_path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                if int(rec.get("update", 0)) <= resume_update:
                    kept.append(json.dumps(rec))
        tmp = self.jsonl_path.with_name(f".{self.jsonl_path.name}.tmp")
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        os.replace(tmp, self.jsonl_path)

    def write(self, split: str, update: int, epoch: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.tb.add_scalar(f"{split}/{k}", v, update)
        rec = {"split": split, "update": update, "epoch": epoch, "time": round(time.time(), 3)}
        rec.update({k: (float(v) if math.isfinite(float(v)) else str(v)) for k, v in values.items()})
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()

    def flush(self) -> None:
        self.tb.flush()
        self._jsonl.flush()

    def close(self) -> None:
        self.tb.close()
        self._jsonl.close()


# --------------------------------------------------------------------------------------------
# Reading the logs back and plotting them
# --------------------------------------------------------------------------------------------
Curves = dict[str, dict[str, list[tuple[int, float]]]]  # split -> name -> [(update, value)]


def read_metrics(exp_dir: str | Path) -> Curves:
    """Curves of an experiment from ``metrics.jsonl``, or from the TensorBoard event files when there
    is no jsonl. For each (split, name, update) the last value written wins (a resumed run rewrites)."""
    exp_dir = Path(exp_dir)
    jsonl = exp_dir / "metrics.jsonl"
    points: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    if jsonl.is_file():
        with open(jsonl, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                split, update = rec.get("split", "train"), int(rec.get("update", 0))
                for k, v in rec.items():
                    if k in ("split", "update", "epoch", "time"):
                        continue
                    try:
                        points[split][k][update] = float(v)
                    except (TypeError, ValueError):
                        continue
    elif (exp_dir / "tensorboard").is_dir():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(exp_dir / "tensorboard"), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            split, _, name = tag.partition("/")
            if not name:
                split, name = "train", tag
            for ev in acc.Scalars(tag):
                points[split][name][int(ev.step)] = float(ev.value)
    else:
        raise FileNotFoundError(f"{exp_dir}: neither metrics.jsonl nor tensorboard/ found; is this a training exp dir?")
    return {s: {k: sorted(v.items()) for k, v in names.items()} for s, names in points.items()}


def plot_metrics(curves: Curves, out_dir: str | Path, title: str = "") -> list[Path]:
    """One PNG per scalar name (train and valid curves of the same name share a plot); returns paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sorted({n for per in curves.values() for n in per})
    written = []
    for name in names:
        fig, ax = plt.subplots(figsize=(6, 4))
        for split in sorted(curves):
            pts = curves[split].get(name)
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=split)
        ax.set_xlabel("update")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"{title} {name}".strip())
        fig.tight_layout()
        path = out_dir / f"{_safe_name(name)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def summarize(curves: Curves) -> dict[str, Any]:
    """Last value of every curve, for a one-line report."""
    return {f"{s}/{k}": v[-1][1] for s, per in curves.items() for k, v in per.items() if v}
