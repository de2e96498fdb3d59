"""Score directories, cross-validation averages and the recipe's RESULTS.md.

A score dir (``exp/<tag>/scores/<set>/``, written by :func:`write_score_dir`) holds:

    scores.ark, scores.scp   per-utterance (C,) float32 probabilities (kaldiio)
    metrics.json             compute_metrics(...) plus provenance: model, data, window, commit
    per_class.tsv            index, label, display name, positives, AP, AUC
    confusion.tsv            single-label only: rows true class, columns predicted (counts)

A cross-validation dir (:func:`write_cv_dir`, e.g. ``exp/finetune_eat_cv/``) holds a metrics.json
with each metric's mean across folds at the top level (so it reads like one run), plus ``std``
(sample standard deviation, ddof 1), ``per_fold`` values and the fold dirs.

RESULTS.md (:func:`render_results_md`) has one row per score dir and CV average of
``exp/finetune_<model>[_scratch][_fold<k>|_cv]`` (fine-tune), ``exp/probe_<model>[_scratch][...]``
(linear probe, ``audiossl.bin.probe``; provenance in its ``probe.json``) and
``exp/baseline_logmel[...]`` (trivial baseline), with their kind and init (pre-trained, or random:
the ``_scratch`` from-scratch control); a published number stands beside a row only in the paper's
setting (:func:`official_protocol`, :func:`paper_row_for`).
"""
from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kaldiio
import numpy as np

from audiossl.score.inference import ScoreResult
from audiossl.score.metrics import compute_metrics, confusion_matrix, per_class_ap, per_class_auc

logger = logging.getLogger(__name__)


def git_commit(repo: str | Path | None = None) -> str:
    """The commit of the audiossl checkout (with "+dirty" for uncommitted changes), or "unknown"."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _json_safe(x: Any) -> Any:
    """NaN and inf as null / strings so the file stays strict JSON."""
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_json(path: Path, obj: Any) -> None:
    """Write obj as indented, strict JSON atomically (a temporary name, then a rename; NaN as null)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def write_score_dir(
    result: ScoreResult, out: str | Path, multi_label: bool, info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write a score dir (module docstring) and return its metrics.json content.

    Without targets (no utt2label in the dump) only the scores and provenance are written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{out / 'scores.ark'},{out / 'scores.scp'}") as writer:
        for utt, row in zip(result.utt_ids, result.scores):
            writer(utt, np.asarray(row, dtype=np.float32))
    summary: dict[str, Any] = {"num_utts": len(result.utt_ids), "multi_label": multi_label}
    if result.targets is not None:
        metrics = compute_metrics(result.scores, result.targets, multi_label)
        summary = {**metrics, **summary}
        ap = per_class_ap(result.scores, result.targets)
        auc = per_class_auc(result.scores, result.targets)
        positives = (result.targets > 0.5).sum(axis=0)
        with open(out / "per_class.tsv", "w", encoding="utf-8") as f:
            f.write("index\tlabel\tname\tpositives\tAP\tAUC\n")
            for c, label in enumerate(result.label_names):
                f.write(f"{c}\t{label}\t{result.display_names[c]}\t{int(positives[c])}\t{ap[c]:.6f}\t{auc[c]:.6f}\n")
        if not multi_label:
            cm = confusion_matrix(result.scores, result.targets)
            with open(out / "confusion.tsv", "w", encoding="utf-8") as f:
                f.write("true\\predicted\t" + "\t".join(result.label_names) + "\n")
                for c, label in enumerate(result.label_names):
                    f.write(label + "\t" + "\t".join(str(int(v)) for v in cm[c]) + "\n")
    summary.update(info or {})
    summary.setdefault("git_commit", git_commit())
    summary.setdefault("date", datetime.datetime.now().isoformat(timespec="seconds"))
    write_json(out / "metrics.json", summary)
    return summary


def read_metrics(score_dir: str | Path) -> dict[str, Any]:
    path = Path(score_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; run the scoring stage (python -m audiossl.bin.score) first")
    return json.loads(path.read_text())


def aggregate_cv(score_dirs: list[str | Path]) -> dict[str, Any]:
    """Mean, sample std (ddof 1; 0 for one fold) and per-fold values of every numeric metric that
    every fold has (e.g. ESC-50's 5 folds: the paper number is the mean accuracy)."""
    assert score_dirs, "give at least one fold's score dir"
    folds = [read_metrics(d) for d in score_dirs]
    skip = {"num_utts", "num_clips", "num_classes_scored"}
    keys = [
        k for k, v in folds[0].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip
        and all(isinstance(f.get(k), (int, float)) and not isinstance(f.get(k), bool) for f in folds)
    ]
    out: dict[str, Any] = {"kind": "cv", "num_folds": len(folds)}
    std: dict[str, float] = {}
    per_fold: dict[str, list[float]] = {}
    for k in keys:
        values = np.array([float(f[k]) for f in folds])
        out[k] = float(values.mean())
        std[k] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        per_fold[k] = values.tolist()
    out["num_utts"] = int(sum(f.get("num_utts", 0) for f in folds))
    out["multi_label"] = bool(folds[0].get("multi_label", False))
    out["std"] = std
    out["per_fold"] = per_fold
    out["folds"] = [str(d) for d in score_dirs]
    commits = sorted({str(f.get("git_commit", "unknown")) for f in folds})
    out["git_commit"] = commits[0] if len(commits) == 1 else ",".join(commits)
    return out


def write_cv_dir(score_dirs: list[str | Path], out: str | Path) -> dict[str, Any]:
    """Write ``<out>/metrics.json`` with the cross-validation average (module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = aggregate_cv(score_dirs)
    write_json(out / "metrics.json", summary)
    return summary


# --------------------------------------------------------------------------------------------
# Published numbers (design notes sections 3 and 4)
# --------------------------------------------------------------------------------------------
BENCHMARKS = ("AS-2M", "AS-20K", "ESC-50", "SPC-2")
BENCHMARK_METRIC = {"AS-2M": "mAP", "AS-20K": "mAP", "ESC-50": "acc", "SPC-2": "acc"}


@dataclass(frozen=True)
class PaperResult:
    model: str
    numbers: dict[str, float | None]  # benchmark -> percent
    source: str
    note: str = ""


PAPER_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("BEATs iter1", {"AS-2M": 47.9, "AS-20K": 36.0, "ESC-50": 94.0, "SPC-2": 98.3},
                "microsoft/unilm beats/README.md"),
    PaperResult("BEATs iter2", {"AS-2M": 48.1, "AS-20K": 38.3, "ESC-50": 95.1, "SPC-2": 98.3},
                "microsoft/unilm beats/README.md"),
    PaperResult("BEATs iter3", {"AS-2M": 48.0, "AS-20K": 38.3, "ESC-50": 95.6, "SPC-2": 98.3},
                "microsoft/unilm beats/README.md"),
    PaperResult("BEATs iter3+", {"AS-2M": 48.6, "AS-20K": 38.9, "ESC-50": 98.1, "SPC-2": 98.1},
                "microsoft/unilm beats/README.md", "ESC-50/SPC-2 after an extra supervised AS-2M step"),
    PaperResult("EAT-base (10 epochs)", {"AS-2M": 48.6, "AS-20K": 40.3, "ESC-50": 96.0, "SPC-2": 98.3},
                "cwx-worst-one/EAT README.md", "arXiv v1: AS-20K 40.2, ESC-50 95.9"),
    PaperResult("Audio-MAE", {"AS-2M": 47.3, "AS-20K": 37.1, "ESC-50": 94.1, "SPC-2": 98.3},
                "as quoted by the EAT paper"),
    PaperResult("OpenBEATs iter1 (ESPnet)", {"AS-2M": None, "AS-20K": 31.3, "ESC-50": 93.4, "SPC-2": None},
                "ESPnet egs2/audioset/ssl1 (their own re-implementation)"),
)

# Every published row above is a ViT-B-sized encoder: 12 layers, 768 wide.
PAPER_ENCODER = (12, 768)


def paper_row_for(encoder_task: str, init: str, encoder_shape: tuple[int, int] | None = None) -> str | None:
    """The published row in the same setting as our model, or None: EAT-base for an EAT encoder,
    BEATs iter r for ``exp/beats_ssl_r<r>`` (iter3 for later rounds or unknown), and only when the
    encoder has the papers' size (``encoder_shape`` = (layers, width) = :data:`PAPER_ENCODER`; an
    unknown shape is not the papers' size)."""
    if encoder_shape is None or tuple(encoder_shape) != PAPER_ENCODER:
        return None
    if encoder_task == "eat_pretrain":
        return "EAT-base (10 epochs)"
    if encoder_task == "beats_ssl":
        found = re.search(r"beats_ssl_r(\d+)", init)
        r = int(found.group(1)) if found else 3
        return f"BEATs iter{min(max(r, 1), 3)}"
    return None


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def guess_benchmark(recipe: str, train_dir: str, test_dir: str) -> str | None:
    """The published benchmark whose corpus an experiment uses, or None.

    The corpus is the recipe's (a word of its name: ``audioset``, ``esc50``, ``spc2`` or
    ``speech_commands``; the mini recipe and your own corpora have none); for AudioSet the
    fine-tuning set decides: ``balanced_train`` / ``as20k`` is AS-20K, ``unbalanced_train`` /
    ``as2m`` / ``train_as2m`` is AS-2M. Whether the numbers are comparable also takes the protocol
    (:func:`official_protocol`) and the model (:func:`paper_row_for`).
    """
    r, tr = _words(recipe), _words(train_dir)
    if r & {"esc50", "esc"}:
        return "ESC-50"
    if r & {"spc2", "spc", "speechcommands"} or {"speech", "commands"} <= r:
        return "SPC-2"
    if "audioset" in r:
        if tr & {"unbalanced", "as2m", "2m"}:
            return "AS-2M"
        if tr & {"balanced", "as20k", "20k"}:
            return "AS-20K"
    return None


def official_protocol(benchmark: str | None, test_set: str, metrics: dict[str, Any]) -> bool:
    """Whether a row is scored as the papers score the benchmark: AudioSet on the ``eval`` set;
    ESC-50 as the mean over 5 cross-validation folds (a single fold is not the published number);
    SPC-2 on the official ``test`` list."""
    is_cv = metrics.get("kind") == "cv"
    if benchmark in ("AS-2M", "AS-20K"):
        return test_set == "eval" and not is_cv
    if benchmark == "ESC-50":
        return is_cv and metrics.get("num_folds") == 5
    if benchmark == "SPC-2":
        return test_set == "test" and not is_cv
    return False


def encoder_shape(section: dict[str, Any] | None) -> tuple[int, int] | None:
    """(layers, width) of an encoder from its saved config (a fine-tuning config's ``model.encoder``,
    the encoder task's ModelConfig: ``depth``/``embed_dim`` for EAT, ``encoder.encoder_layers``/
    ``encoder.encoder_embed_dim`` for BEATs), or from probe.json's ``encoder``; None if it does not say."""

    def find(d: Any, key: str) -> Any:
        if not isinstance(d, dict):
            return None
        if isinstance(d.get(key), int) and not isinstance(d.get(key), bool):
            return d[key]
        for v in d.values():
            got = find(v, key)
            if got is not None:
                return got
        return None

    if not isinstance(section, dict):
        return None
    layers = next((v for k in ("num_layers", "encoder_layers", "depth") if (v := find(section, k)) is not None), None)
    width = next((v for k in ("encoder_embed_dim", "embed_dim") if (v := find(section, k)) is not None), None)
    return (int(layers), int(width)) if layers is not None and width is not None else None


# --------------------------------------------------------------------------------------------
# RESULTS.md
# --------------------------------------------------------------------------------------------
KINDS = {"finetune": "fine-tune", "probe": "linear probe", "baseline": "trivial baseline"}
INIT_PRETRAINED, INIT_SCRATCH, INIT_NONE = "pre-trained", "random (scratch)", "-"
# exp/finetune_<model>[_scratch][_fold<k>|_cv], exp/probe_<model>[_scratch][_fold<k>|_cv], exp/baseline_logmel[...]
_TAG = re.compile(r"^(?P<kind>finetune|probe|baseline)_(?P<model>.+?)(?P<scratch>_scratch)?(?:_fold(?P<fold>\d+)|_(?P<cv>cv))?$")


@dataclass
class ResultRow:
    """One line of our results: an experiment scored on one set (or a cross-validation average).

    Attributes:
        kind: "fine-tune", "linear probe", "trivial baseline" or "-" (an exp dir of another name).
        init: "pre-trained", "random (scratch)" (the from-scratch control) or "-".
        model: the model part of the tag (``eat`` of ``probe_eat_scratch_fold2``), else the tag.
        fold: the fold number of a ``_fold<k>`` tag.
        probe: probe.json of a linear probe or baseline (of the first fold for a CV average).
    """

    tag: str
    test_set: str
    metrics: dict[str, Any]
    exp_dir: Path
    score_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    config_path: Path | None = None
    plots: list[Path] = field(default_factory=list)
    kind: str = "-"
    init: str = INIT_NONE
    model: str = ""
    fold: int | None = None
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def is_cv(self) -> bool:
        return self.metrics.get("kind") == "cv"

    @property
    def main_metric(self) -> str:
        return "mAP" if self.metrics.get("multi_label") else "acc"

    @property
    def init_checkpoint(self) -> str | None:
        """The model.pt the row's model started from (fine-tuning) or was probed (probe)."""
        if self.probe:
            return self.probe.get("model")
        return (self.config.get("model") or {}).get("init")

    @property
    def encoder_shape(self) -> tuple[int, int] | None:
        if self.probe:
            return encoder_shape(self.probe.get("encoder"))
        return encoder_shape((self.config.get("model") or {}).get("encoder"))

    def sort_key(self) -> tuple:
        """Kinds in the order fine-tune, probe, baseline; one model's rows together (single runs,
        folds in order, then the CV average), each pre-trained row just above its scratch control."""
        kind_rank = {v: i for i, v in enumerate(KINDS.values())}.get(self.kind, len(KINDS))
        run = 0 if self.fold is None and not self.is_cv else (1 if not self.is_cv else 2)
        return (kind_rank, self.model, run, self.fold or 0, self.test_set, self.init == INIT_SCRATCH, self.tag)


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        logger.warning("%s: cannot read (%s)", path, e)
        return {}


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        logger.warning("%s: cannot read (%s)", path, e)
        return {}


def _describe(row: ResultRow) -> None:
    """Fill in kind, model, fold and init from the tag, probe.json and config.yaml."""
    m = _TAG.match(row.tag)
    task = row.config.get("task")
    if m:
        row.kind, row.model = KINDS[m.group("kind")], m.group("model")
        row.fold = int(m.group("fold")) if m.group("fold") else None
    else:
        row.model = row.tag
        row.kind = KINDS["probe"] if row.probe.get("method") == "linear_probe" else (
            KINDS["baseline"] if str(row.probe.get("method", "")).startswith("baseline") else
            KINDS["finetune"] if task == "finetune" else "-")
    scratch = bool(m and m.group("scratch"))
    if row.kind == KINDS["baseline"]:
        row.init = INIT_NONE
    elif row.probe:
        row.init = INIT_SCRATCH if scratch or row.probe.get("random_init") else INIT_PRETRAINED
    elif row.kind == KINDS["finetune"]:
        model = row.config.get("model")
        if scratch or (isinstance(model, dict) and "init" in model and model["init"] is None):
            row.init = INIT_SCRATCH  # model.init null: a randomly initialised encoder
        elif isinstance(model, dict) and model.get("init"):
            row.init = INIT_PRETRAINED
    elif scratch:
        row.init = INIT_SCRATCH


def collect_results(exp_root: str | Path) -> list[ResultRow]:
    """Every ``<exp_root>/<tag>/scores/<set>/metrics.json`` and ``<exp_root>/<tag>/metrics.json``
    (cross-validation) that has metrics, in :meth:`ResultRow.sort_key` order.

    A row's provenance is its exp dir's config.yaml (fine-tuning) or probe.json (linear probes and
    baselines, :func:`audiossl.score.probe.run_probe`); a CV average has neither and takes its first
    fold's."""
    exp_root = Path(exp_root)
    rows: list[ResultRow] = []
    for exp_dir in sorted(p for p in exp_root.iterdir() if p.is_dir()) if exp_root.is_dir() else []:
        config = _load_yaml(exp_dir / "config.yaml") if (exp_dir / "config.yaml").is_file() else {}
        probe = _load_json(exp_dir / "probe.json") if (exp_dir / "probe.json").is_file() else {}
        candidates = [exp_dir] + sorted(p for p in (exp_dir / "scores").glob("*") if p.is_dir())
        for d in candidates:
            if not (d / "metrics.json").is_file():
                continue
            metrics = json.loads((d / "metrics.json").read_text())
            if "mAP" not in metrics and "acc" not in metrics:
                continue  # scored without labels
            row_config, row_probe = config, probe
            config_path = exp_dir / "config.yaml" if config else (exp_dir / "probe.json" if probe else None)
            if not (row_config or row_probe) and metrics.get("kind") == "cv" and metrics.get("folds"):
                # A CV average has no config of its own: its first fold's experiment describes it.
                fold = Path(metrics["folds"][0])
                for fold_exp in (fold.parent.parent, exp_root.parent / fold.parent.parent):
                    if (fold_exp / "config.yaml").is_file():
                        row_config, config_path = _load_yaml(fold_exp / "config.yaml"), fold_exp / "config.yaml"
                        break
                    if (fold_exp / "probe.json").is_file():
                        row_probe, config_path = _load_json(fold_exp / "probe.json"), fold_exp / "probe.json"
                        break
            test_set = "cv" if d == exp_dir else d.name
            row = ResultRow(exp_dir.name, test_set, metrics, exp_dir, d, row_config, config_path, probe=row_probe)
            _describe(row)
            rows.append(row)
    return sorted(rows, key=ResultRow.sort_key)


def _pct(x: Any) -> str:
    return f"{100 * float(x):.2f}" if isinstance(x, (int, float)) and not math.isnan(float(x)) else "-"


def make_plots(row: ResultRow, top: int = 20) -> list[Path]:
    """Per-class AP bars (and for single-label a confusion matrix) of a score dir, in
    ``<exp>/plots/``; read from per_class.tsv / confusion.tsv. Returns the files written."""
    from audiossl.score.plots import plot_confusion, plot_per_class_ap

    written = []
    plot_dir = row.exp_dir / "plots"
    per_class = row.score_dir / "per_class.tsv"
    if per_class.is_file():
        lines = per_class.read_text(encoding="utf-8").splitlines()[1:]
        parts = [ln.split("\t") for ln in lines if ln]
        ap = [float(p[4]) for p in parts]
        names = [p[2] for p in parts]
        written.append(plot_per_class_ap(ap, names, plot_dir / f"per_class_ap_{row.test_set}.png", top=top,
                                         title=f"{row.tag} {row.test_set}"))
    confusion = row.score_dir / "confusion.tsv"
    if confusion.is_file():
        lines = confusion.read_text(encoding="utf-8").splitlines()
        names = lines[0].split("\t")[1:]
        cm = np.array([[int(v) for v in ln.split("\t")[1:]] for ln in lines[1:] if ln])
        written.append(plot_confusion(cm, names, plot_dir / f"confusion_{row.test_set}.png",
                                      title=f"{row.tag} {row.test_set}"))
    return written


def render_results_md(rows: list[ResultRow], recipe: str, root: str | Path, commit: str | None = None) -> str:
    """The RESULTS.md text: our rows beside the published numbers, with provenance and plot links.

    Args:
        rows: from :func:`collect_results`.
        recipe: the recipe name (e.g. "audioset"), used to match rows to published benchmarks.
        root: the recipe dir; paths in the file are relative to it.
    """
    root = Path(root)

    def rel(p: Path | str) -> str:
        try:
            return os.path.relpath(Path(p), root)
        except ValueError:
            return str(p)

    commit = commit or git_commit()
    out = [
        f"# Results: {recipe}",
        "",
        f"Generated by `python -m audiossl.bin.make_results` at commit `{commit}`. Numbers are percent. "
        "mAP is the mean over classes with positives of the per-class average precision (ties share a "
        "threshold, as scikit-learn's average_precision_score); acc is top-1 accuracy; "
        "see `audiossl/score/metrics.py` for the exact definitions.",
        "",
        "## Our models",
        "",
    ]
    if rows:
        out += [
            "| experiment | kind | init | test set | benchmark | metric | ours | published (same setting) | mAUC | "
            "d' | config | init checkpoint | scored at commit |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            m = r.metrics
            data = r.config.get("data") or {}
            model = r.config.get("model") or {}
            train = str(r.probe.get("train") or data.get("train", ""))
            bench = guess_benchmark(recipe, train, str(m.get("data", r.test_set)))
            metric = BENCHMARK_METRIC.get(bench, r.main_metric) if bench else r.main_metric
            ours = _pct(m.get(metric))
            if r.is_cv and metric in (m.get("std") or {}):
                ours += f" ± {100 * float(m['std'][metric]):.2f} ({m.get('num_folds')} folds)"
            paper = "-"
            # Published numbers are fine-tuning numbers of paper-size pre-trained encoders, on the
            # paper's corpus and test protocol: only such a row gets one.
            if r.kind == KINDS["finetune"] and r.init == INIT_PRETRAINED and official_protocol(bench, r.test_set, m):
                paper_row = paper_row_for(str(model.get("encoder_task", "")), str(model.get("init") or ""), r.encoder_shape)
                if paper_row:
                    value = next(p.numbers.get(bench) for p in PAPER_RESULTS if p.model == paper_row)
                    paper = f"{value} ({paper_row})" if value is not None else "-"
            config_path = rel(r.config_path) if r.config_path is not None else "-"
            init = r.init_checkpoint or "-"
            d_prime = m.get("d_prime")
            out.append(
                f"| {r.tag} | {r.kind} | {r.init} | {r.test_set} | {bench or '-'} | {metric} | {ours} | {paper} | "
                f"{_pct(m.get('mAUC'))} | "
                f"{d_prime if isinstance(d_prime, str) else ('-' if d_prime is None else f'{float(d_prime):.3f}')} | "
                f"`{config_path}` | `{init}` | `{m.get('git_commit', 'unknown')}` |"
            )
        out += [
            "",
            "kind: fine-tune (encoder and head trained), linear probe (a linear classifier on the frozen "
            "encoder's mean-pooled layer, `audiossl.bin.probe`) or trivial baseline (a linear classifier on "
            "each clip's log-mel mean and standard deviation). init: pre-trained encoder, or random (scratch): "
            "the same architecture from random weights, the control that shows what pre-training adds. "
            "A published number is shown only in the paper's setting: a fine-tuned pre-trained encoder of the "
            f"papers' size ({PAPER_ENCODER[0]} layers x {PAPER_ENCODER[1]}), on the paper recipe's corpus and "
            "test protocol (AudioSet eval, the mean of ESC-50's 5 folds, the SPC-2 test list).",
        ]
    else:
        out.append("No scored experiments yet: run the scoring stage first.")
    out += [
        "",
        "## Published numbers",
        "",
        "| model | " + " | ".join(BENCHMARKS) + " | source |",
        "|---|" + "---|" * len(BENCHMARKS) + "---|",
    ]
    for p in PAPER_RESULTS:
        cells = [str(p.numbers.get(b)) if p.numbers.get(b) is not None else "-" for b in BENCHMARKS]
        note = f" ({p.note})" if p.note else ""
        out.append(f"| {p.model} | " + " | ".join(cells) + f" | {p.source}{note} |")
    out += ["", "AS-2M and AS-20K: mAP on the AudioSet eval set; ESC-50: 5-fold cross-validation accuracy; "
            "SPC-2: test accuracy (35 words).", ""]
    plot_rows = [r for r in rows if r.plots]
    training_plots = sorted({p for r in rows for p in (r.exp_dir / "plots").glob("*.png")} - {p for r in rows for p in r.plots})
    if plot_rows or training_plots:
        out += ["## Plots", ""]
        for r in plot_rows:
            out.append(f"- {r.tag} / {r.test_set}: " + ", ".join(f"[{p.stem}]({rel(p)})" for p in r.plots))
        for p in training_plots:
            out.append(f"- {p.parent.parent.name}: [{p.stem}]({rel(p)})")
        out.append("")
    return "\n".join(out)


def write_results_md(exp_root: str | Path, out: str | Path, recipe: str | None = None, plots: bool = True) -> list[ResultRow]:
    """Collect every scored experiment under ``exp_root``, draw its plots, write ``out``."""
    out = Path(out)
    root = out.resolve().parent
    recipe = recipe or root.name
    rows = collect_results(exp_root)
    if plots:
        for r in rows:
            if not r.is_cv:
                r.plots = make_plots(r)
    text = render_results_md(rows, recipe, root)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(out)
    logger.info("wrote %s (%d result rows)", out, len(rows))
    return rows
