"""Linear probes of frozen encoders, and the trivial log-mel baseline, scored like fine-tuned models.

Features of a clip (one fixed-size vector per clip and layer):

* :func:`encoder_embeddings`: every layer's hidden states (layers 1..L; the input embedding is not
  offered) of a frozen encoder (eval mode, no gradients), mean-pooled over the tokens that cover
  real frames. How a clip of T frames is fed:

  - ``window_frames`` W given and T > W: the windows scoring uses (``audiossl.data.windows.
    window_starts``: W frames at 0, W/2, W, ... and one ending at the last frame), their embeddings
    averaged, windows of digital silence left out as scoring leaves them out;
  - T <= W (or no W: whole clips) in one piece. With ``pad_to_window`` (the default for encoders
    that take fixed-length input, EAT) a clip shorter than W is zero-padded in raw log-mel to W frames
    before normalisation and the padding mask is passed, exactly what fine-tuning's collator and
    ``audiossl.score.inference`` feed it, so the embedding is the one the model would see there (EAT
    attends to the padded patches; only the pooling leaves them out). Without it (BEATs) the clip
    goes in at its own length, unpadded;
  - a clip (window) shorter than one patch row of the encoder (its ``patch_size`` /
    ``input_patch_size``, 16 frames) is zero-padded to one row, with the padding mask, and pooled
    over the tokens that cover real frames; an encoder whose patch size cannot be read gives an
    error naming the utterance.

  Clips are batched only with clips of the same length (``same_length_batches``) and every window
  of a batch has the same length and padding, so nothing is ever padded to another clip's length
  and an embedding does not depend on what it was batched with.

* :func:`logmel_stats`: the trivial baseline: per mel bin, the mean and standard deviation over
  time of the raw log-mel, digital-silence frames left out (:func:`digital_silence_frames`).

:func:`run_probe` fits a probe per layer (:mod:`audiossl.score.linear`), picks the layer by the
validation metric, and writes one score dir per test set (``audiossl.score.results.write_score_dir``:
the same metrics.json, per_class.tsv and confusion.tsv as fine-tuning's scores) and ``probe.json``.
"""
from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from audiossl.data.datadir import read_labels
from audiossl.data.dump import Dump
from audiossl.data.fbank import FeatureNorm, digital_silence_frames, normalize
from audiossl.data.windows import active_windows, default_hop, window_starts
from audiossl.score.extract import layer_index, same_length_batches
from audiossl.score.inference import ScoreResult, read_targets
from audiossl.score.linear import DEFAULT_L2_GRID, DEFAULT_MAX_ITER, fit_linear, holdout_split, main_metric
from audiossl.score.results import git_commit, write_json, write_score_dir

logger = logging.getLogger(__name__)

FeatureFn = Callable[[Path], tuple[list[str], dict[Any, np.ndarray]]]
LOG_EVERY = 1000  # clips between progress lines


# --------------------------------------------------------------------------------------------
# Encoder embeddings
# --------------------------------------------------------------------------------------------
def takes_fixed_length(encoder: nn.Module) -> bool:
    """Whether the encoder's models are trained and scored on fixed-length (zero-padded) input: EAT."""
    from audiossl.models.eat.encoder import EATEncoder

    return isinstance(encoder, EATEncoder)


def patch_frames(encoder: nn.Module) -> int | None:
    """Frames per token row of an encoder (its config's ``patch_size`` or ``input_patch_size``)."""
    cfg = getattr(encoder, "cfg", None)
    for name in ("patch_size", "input_patch_size"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def resolve_layers(layers: str | int | Sequence[int], num_layers: int) -> list[int]:
    """"all" -> [1..L]; L or [L, ...] -> those (negative counts from the end: -1 = L)."""
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or layer numbers 1..{num_layers}, got {layers!r}")
        return list(range(1, num_layers + 1))
    wanted = [layers] if isinstance(layers, int) else list(layers)
    return [layer_index(layer, num_layers) + 1 for layer in wanted]  # extraction's numbering and checks


def _pool(hidden: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """(n, N, D) tokens, (n, N) True on padding -> (n, D) float64 mean over the real tokens."""
    h = hidden.double()
    if token_mask is None:
        return h.mean(dim=1)
    keep = (~token_mask).double()[:, :, None]  # (n, N, 1)
    return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


@torch.no_grad()
def encoder_embeddings(
    encoder: nn.Module,
    norm: FeatureNorm,
    dump_dir: str | Path,
    layers: str | int | Sequence[int] = "all",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    window_frames: int | None = None,
    pad_to_window: bool | None = None,
    fbank_kind: str | None = None,
) -> tuple[list[str], dict[int, np.ndarray]]:
    """Clip embeddings of every utterance of a dump (see the module docstring).

    Args:
        encoder: an AbsEncoder; used in eval mode, frozen.
        norm: the model's feature normalisation.
        layers: "all" (1..L) or layer numbers.
        batch_size: windows per forward pass.
        window_frames: W: longer clips are cut into windows of W frames, hop W/2; None or 0: whole clips.
        pad_to_window: zero-pad clips shorter than W to W (with the padding mask); None: for
            encoders that take fixed-length input (:func:`takes_fixed_length`).
        fbank_kind: the encoder's front end, for a raw audio dump (:class:`audiossl.data.dump.Dump`).

    Returns:
        (utterance ids in the dump's order, {layer: (N, D) float32}).
    """
    dump = Dump(dump_dir, fbank_kind)
    window = int(window_frames) if window_frames else None
    if pad_to_window is None:
        pad_to_window = takes_fixed_length(encoder)
    pad_to_window = bool(pad_to_window and window)
    wanted = resolve_layers(layers, int(encoder.num_layers))
    patch = patch_frames(encoder)
    if window and patch and window < patch:
        raise ValueError(f"window_frames {window} is shorter than one patch row of the encoder ({patch} frames)")
    device = torch.device(device)
    encoder.to(device).eval()
    order = dump.utt_ids
    pooled: dict[str, dict[int, np.ndarray]] = {}
    pad_value = -norm.mean / (2 * norm.std)  # a zero of raw log-mel, normalised
    n_windows = n_short = 0
    started = time.monotonic()

    def forward(x: torch.Tensor, real: int, utts: list[str]) -> list[torch.Tensor]:
        """(n, l, F) normalised windows with ``real`` real frames each -> per wanted layer (n, D)."""
        n, length, F_ = x.shape
        target = max(length, window if pad_to_window else 0, patch or 0)
        mask = None
        if target > length:
            x = torch.cat([x, torch.full((n, target - length, F_), pad_value, dtype=x.dtype)], dim=1)
            mask = torch.zeros(n, target, dtype=torch.bool)
            mask[:, real:] = True
            mask = mask.to(device)
        enc = encoder(x.to(device), mask, output_hidden_states=True)
        hidden = enc.hidden_states if enc.hidden_states is not None else [None] * (encoder.num_layers - 1) + [enc.tokens]
        if enc.tokens.shape[1] == 0:
            raise ValueError(
                f"{dump_dir}: utterance {utts[0]!r} has {real} frames, too few for one token of the encoder "
                f"(patch size unknown: {type(encoder).__name__} has no cfg.patch_size); drop it from the dump"
            )
        out = []
        for layer in wanted:
            h = hidden[layer - 1]
            if h is None:
                raise ValueError(f"{type(encoder).__name__} returns no hidden states: only its last layer ({encoder.num_layers}) can be probed")
            out.append(_pool(h, enc.padding_mask))
        return out

    for batch in same_length_batches(dump, batch_size):
        utts = [u for u, _ in batch]
        raw = [np.asarray(a, dtype=np.float32) for _, a in batch]
        x = normalize(torch.from_numpy(np.stack(raw)), norm)  # (B, T, F)
        B, T, _ = x.shape
        if patch is not None and min(T, window or T) < patch and not pad_to_window:
            n_short += B
        starts = window_starts(T, window, default_hop(window)) if window else [0]
        # windows of digital silence are left out of a clip's mean, as scoring leaves them out
        keep = np.stack([active_windows(r, starts, window) if window else np.ones(1, bool) for r in raw], axis=1)  # (K, B)
        weight = torch.from_numpy(keep.astype(np.float32))[:, :, None]  # (K, B, 1)
        # every window of every clip of the batch, window-major: (K * B, l, F), l = min(T, W)
        wins = torch.cat([x[:, s : s + window] for s in starts], dim=0) if window else x
        real = wins.shape[1]
        chunks = [forward(wins[i : i + batch_size], real, utts) for i in range(0, wins.shape[0], batch_size)]
        for k, layer in enumerate(wanted):
            per_window = torch.cat([c[k] for c in chunks], dim=0).reshape(len(starts), B, -1)  # (K, B, D)
            mean = ((per_window.float().cpu() * weight).sum(dim=0) / weight.sum(dim=0)).numpy()  # (B, D)
            for b, utt in enumerate(utts):
                pooled.setdefault(utt, {})[layer] = mean[b]
        n_windows += int(keep.sum())
        if len(pooled) // LOG_EVERY != (len(pooled) - B) // LOG_EVERY:
            logger.info("%s: embedded %d of %d clips", dump_dir, len(pooled), len(order))
    missing = [u for u in order if u not in pooled]
    assert not missing, f"{dump.scp}: no embedding for {missing[:5]}"
    out = {layer: np.stack([pooled[u][layer] for u in order]).astype(np.float32) for layer in wanted}
    if n_short:
        logger.warning("%s: %d clips are shorter than one patch row (%s frames): zero-padded to it, pooled over their real tokens",
                       dump_dir, n_short, patch)
    logger.info("%s: embedded %d clips (%d windows%s) at layers %s in %.1f s", dump_dir, len(order), n_windows,
                f" of {window} frames" if window else "", _ranges(wanted), time.monotonic() - started)
    return order, out


def _ranges(layers: list[int]) -> str:
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ",".join(map(str, layers))


# --------------------------------------------------------------------------------------------
# The trivial baseline
# --------------------------------------------------------------------------------------------
def logmel_stats(dump_dir: str | Path, fbank_kind: str | None = None) -> tuple[list[str], np.ndarray]:
    """The trivial baseline's features: per clip the (F,) mean and (F,) standard deviation over time
    of each raw log-mel bin, digital-silence frames left out (all frames if every frame is silence).

    Returns:
        (utterance ids in the dump's order, (N, 2F) float32: means then standard deviations).
    """
    reader = Dump(dump_dir, fbank_kind)
    utts, rows = [], []
    all_silent = dropped = total = 0
    for utt in reader:
        x = np.asarray(reader[utt], dtype=np.float64)  # (T, F)
        silent = digital_silence_frames(x)
        keep = x[~silent] if not silent.all() else x
        all_silent += int(silent.all())
        dropped += int(silent.sum()) if not silent.all() else 0
        total += x.shape[0]
        rows.append(np.concatenate([keep.mean(axis=0), keep.std(axis=0)]))
        utts.append(utt)
    if all_silent:
        logger.warning("%s: %d clips are digital silence throughout: their statistics use every frame", dump_dir, all_silent)
    logger.info("%s: log-mel statistics of %d clips (%d of %d frames left out as digital silence)",
                dump_dir, len(utts), dropped, total)
    return utts, np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Fitting and scoring
# --------------------------------------------------------------------------------------------
def score_dir_name(dump_dir: str | Path) -> str:
    """The score dir of a test dump, as the template's stage 6 names it: the set name (the path below
    ``dump/fbank_<kind>/`` or ``dump/raw/``, else the last component) with "/" replaced by "_"."""
    parts = Path(dump_dir).parts
    for i in range(len(parts) - 1, -1, -1):
        if (parts[i].startswith("fbank_") or parts[i] == "raw") and i + 1 < len(parts):
            return "_".join(parts[i + 1 :])
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "dump" and i + 1 < len(parts):
            return "_".join(parts[i + 1 :])
    return Path(dump_dir).name


def _same_dir(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _labelled(dump_dir: Path, what: str) -> None:
    for name in ("labels.txt", "utt2label"):
        if not (dump_dir / name).is_file():
            raise FileNotFoundError(
                f"{dump_dir / name}: no such file; the {what} dump of a probe needs labels.txt and utt2label "
                "(copy them from the data dir, as the feature stage does)"
            )


def run_probe(
    features: FeatureFn,
    train_dir: str | Path,
    test_dirs: Sequence[str | Path],
    out_dir: str | Path,
    valid_dir: str | Path | None = None,
    multi_label: bool | None = None,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = DEFAULT_MAX_ITER,
    fit_device: str | torch.device = "cpu",
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit a linear probe on ``features`` of the train dump and score every test dump.

    Args:
        features: dump dir -> (utterance ids, {layer: (N, D)}); every layer is a candidate, the one
            with the best validation metric is kept (give one layer to fix it).
        valid_dir: the dump the L2 weight and the layer are chosen on. None, or one of the test
            dirs (ESC-50 folds validate on their test fold): a stratified ``holdout_fraction`` of
            the train dump is held out for that instead, and the final probe is refit on all of it.
        multi_label: sigmoid / mAP (True) or softmax / accuracy (False); None: True when a train
            clip has more than one label.
        info: provenance written into probe.json and every metrics.json (model, method, ...).

    Writes ``<out_dir>/scores/<score_dir_name(test)>/`` per test dump, ``<out_dir>/probe.json`` and
    ``<out_dir>/probe.npz`` (the chosen probe: mean, std, weight, bias, label_names).

    Returns:
        The probe.json content.
    """
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    test_dirs = [Path(t) for t in test_dirs]
    assert test_dirs, "give at least one test dump"
    info = dict(info or {})
    _labelled(train_dir, "train")
    label_names, display = read_labels(train_dir / "labels.txt")
    names = [score_dir_name(t) for t in test_dirs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"test dumps {[str(t) for t in test_dirs]} give the same score dir name(s) {dupes}")
    held_out = valid_dir is None or any(_same_dir(valid_dir, t) for t in test_dirs)
    cache: dict[Path, tuple[list[str], dict[Any, np.ndarray]]] = {}

    def feats_of(d: Path) -> tuple[list[str], dict[Any, np.ndarray]]:
        key = d.resolve()
        if key not in cache:
            cache[key] = features(d)
        return cache[key]

    train_utts, train_feats = feats_of(train_dir)
    train_y, _ = read_targets(train_dir, train_utts, label_names)
    assert train_y is not None
    if multi_label is None:
        multi_label = bool((train_y.sum(axis=1) > 1).any())
    keep = train_y.sum(axis=1) > 0 if not multi_label else np.ones(len(train_utts), dtype=bool)
    if not keep.all():
        logger.warning("%s: %d clips without a label are left out of the single-label probe", train_dir, int((~keep).sum()))
    metric = main_metric(multi_label)

    if held_out:
        why = "no --valid given" if valid_dir is None else f"the validation dump {valid_dir} is a test dump"
        idx = np.flatnonzero(keep)
        tr, va = holdout_split(train_y[idx], holdout_fraction, seed)
        tr_idx, va_idx = idx[tr], idx[va]
        logger.info("%s: holding out a stratified %.0f%% of %s for validation (seed %d): %d train, %d valid clips; "
                    "the chosen probe is refit on all %d", why, 100 * holdout_fraction, train_dir, seed,
                    len(tr_idx), len(va_idx), len(idx))
        splits = {layer: (x[tr_idx], train_y[tr_idx], x[va_idx], train_y[va_idx]) for layer, x in train_feats.items()}
    else:
        valid_dir = Path(valid_dir)
        _labelled(valid_dir, "validation")
        valid_utts, valid_feats = feats_of(valid_dir)
        valid_y, _ = read_targets(valid_dir, valid_utts, label_names)
        tr_idx = np.flatnonzero(keep)
        va_idx = np.arange(len(valid_utts))
        missing = sorted(set(train_feats) - set(valid_feats))
        assert not missing, f"no validation features for layers {missing}"
        splits = {layer: (x[tr_idx], train_y[tr_idx], valid_feats[layer], valid_y) for layer, x in train_feats.items()}

    probes = {}
    for layer, (tx, ty, vx, vy) in splits.items():
        started = time.monotonic()
        probes[layer] = fit_linear(tx, ty, vx, vy, multi_label, l2_grid, refit_with_valid=held_out,
                                   max_iter=max_iter, device=fit_device)
        p = probes[layer]
        logger.info("layer %s: valid %s %.4f at l2 %g (%d features, %d L-BFGS iterations, %.1f s)", layer, metric,
                    p.valid_metric, p.l2, tx.shape[1], p.num_iter, time.monotonic() - started)
    best = max(probes, key=lambda k: probes[k].valid_metric)  # ties: the first layer
    probe = probes[best]
    if len(probes) > 1:
        logger.info("chosen: layer %s (valid %s %.4f, l2 %g)", best, metric, probe.valid_metric, probe.l2)

    out_dir.mkdir(parents=True, exist_ok=True)
    probe_info = {
        "layer": best, "l2": probe.l2, "valid_metric": metric, "valid_value": probe.valid_metric,
        "train": str(train_dir), "valid": None if held_out else str(valid_dir),
        "valid_held_out": holdout_fraction if held_out else None,
    }
    tests: dict[str, Any] = {}
    for test_dir, name in zip(test_dirs, names):
        utts, feats = feats_of(test_dir)
        scores = probe.predict_proba(feats[best])  # (N, C)
        targets, disp = read_targets(test_dir, utts, label_names)
        if targets is None:
            logger.warning("%s: no utt2label: writing scores without metrics", test_dir)
        result = ScoreResult(utts, scores, targets, list(label_names), disp if (test_dir / "labels.txt").is_file() else display,
                             np.ones(len(utts), dtype=np.int64))
        score_dir = out_dir / "scores" / name
        summary = write_score_dir(result, score_dir, multi_label, {**info, "data": str(test_dir), "probe": probe_info})
        tests[name] = {"data": str(test_dir), "score_dir": str(score_dir),
                       **{k: summary[k] for k in ("mAP", "acc", "mAUC") if k in summary}}
        shown = ", ".join(f"{k} {summary[k]:.4f}" for k in ("acc", "mAP") if isinstance(summary.get(k), float))
        logger.info("%s -> %s%s", test_dir, score_dir, f": {shown}" if shown else "")

    np.savez(out_dir / "probe.npz", mean=probe.mean, std=probe.std, weight=probe.weight, bias=probe.bias,
             label_names=np.array(label_names), multi_label=np.array(multi_label), layer=np.array(str(best)))
    report = {
        **info,
        "layer": best,
        "l2": probe.l2,
        "l2_grid": sorted(float(v) for v in l2_grid),
        "multi_label": multi_label,
        "valid_metric": metric,
        "valid_metric_per_layer": {str(k): p.valid_metric for k, p in probes.items()},
        "l2_per_layer": {str(k): p.l2 for k, p in probes.items()},
        "valid_grid_per_layer": {str(k): {str(l2): v for l2, v in p.grid.items()} for k, p in probes.items()},
        "feature_dim": int(probe.weight.shape[0]),
        "num_classes": len(label_names),
        "train": str(train_dir),
        "valid": None if held_out else str(valid_dir),
        "valid_held_out": holdout_fraction if held_out else None,
        "seed": seed,
        "num_train": int(len(tr_idx)),
        "num_valid": int(len(va_idx)),
        "num_fit": probe.num_fit,
        "tests": tests,
        "git_commit": git_commit(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    write_json(out_dir / "probe.json", report)
    return report
