"""Linear probe of a frozen encoder (or the trivial log-mel baseline), scored like a fine-tuned model.

Usage:
    python -m audiossl.bin.probe --model exp/<tag>/model.pt --train dump/fbank_eat/train \\
        [--valid dump/fbank_eat/dev] --test dump/fbank_eat/test [more test dirs] --out exp/probe_<tag> \\
        [--layer all|L] [--random-init true|false] [--window-frames N] [--batch-size 16] \\
        [--device cpu|cuda] [--norm-mean X --norm-std Y] [--multi-label true|false] \\
        [--l2-grid 1e-4,1e-3,1e-2,1e-1,1,10] [--seed 0]
    python -m audiossl.bin.probe --baseline logmel --train dump/fbank_eat/train --test dump/fbank_eat/test \\
        --out exp/baseline_logmel

The first form embeds every clip with the model's encoder (any model.pt with one: BEATs SSL or
tokenizer, EAT pre-training, a fine-tuned classifier), frozen: each layer's hidden states mean-pooled
over the clip's real tokens; --random-init true builds the same architecture from the file's config
with random weights instead (seeded by --seed: the from-scratch control). The second form uses the
mean and standard deviation over time of every raw log-mel bin, digital silence left out.

A linear classifier (softmax for single-label data, one-vs-rest sigmoid for multi-label) is fit on
the standardised train features by L-BFGS, its L2 weight picked from --l2-grid by the validation
accuracy (mAP for multi-label) and, with --layer all, the layer too. Without --valid, or when --valid
is one of the --test dirs (ESC-50 folds), a stratified 20% of train is held out for that choice and
the probe is refit on all of train. See audiossl/score/linear.py and audiossl/score/probe.py.

Writes <out>/scores/<set>/ for every --test dir (<set>: its path below dump/fbank_<kind>/ with "/"
replaced by "_", as stage 6 names fine-tuning's score dirs): scores.{ark,scp}, metrics.json,
per_class.tsv, confusion.tsv; and <out>/probe.json (chosen layer and L2, validation metric per
layer, feature dim, model, random_init, train/valid sizes) and <out>/probe.npz (the probe).
Average folds with python -m audiossl.bin.score --cv <out_fold*>/scores/<set> --out <out>_cv.

--window-frames: windows of N frames, hop N/2, averaged, for longer clips; shorter clips of
fixed-length models (EAT) zero-padded to N. Default: the model.pt's data.target_frames for EAT,
0 (whole clips) for BEATs. Features are normalised as the model was trained (its config, else the
stats.json of its training dump, else --norm-mean/--norm-std). Run from the recipe directory.
"""
from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path

from audiossl.bin.common import setup_logging, str2bool

logger = logging.getLogger("audiossl.bin.probe")

BASELINES = ("logmel",)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.probe",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model.pt with an encoder (pre-trained or fine-tuned)")
    source.add_argument("--baseline", choices=BASELINES, help="a trivial baseline instead of a model: logmel")
    parser.add_argument("--train", required=True, help="train dump dir (feats.scp or wav.scp, utt2label, labels.txt)")
    parser.add_argument("--fbank-kind", choices=("beats", "eat"), default=None,
                        help="the front end of raw audio dumps (wav.scp) [--model: the model's own; --baseline: required]")
    parser.add_argument("--valid", default=None,
                        help="validation dump dir [none: hold out 20%% of train; also when it is a --test dir]")
    parser.add_argument("--test", nargs="+", required=True, metavar="DUMP_DIR", help="test dump dir(s)")
    parser.add_argument("--out", required=True, help="output dir, e.g. exp/probe_<model>")
    parser.add_argument("--layer", default="all", help="encoder layer 1..L (negative: from the end), or all: choose on valid [all]")
    parser.add_argument("--random-init", type=str2bool, default=False,
                        help="true: the model's architecture with random weights (the from-scratch control) [false]")
    parser.add_argument("--window-frames", type=int, default=None,
                        help="window length in frames; 0: whole clips [EAT: the model's data.target_frames; BEATs: 0]")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass [16]")
    parser.add_argument("--device", default=None, help="cpu or cuda [cuda when available]")
    parser.add_argument("--norm-mean", type=float, default=None, help="feature mean [model config / stats.json]")
    parser.add_argument("--norm-std", type=float, default=None, help="feature std [model config / stats.json]")
    parser.add_argument("--multi-label", type=str2bool, default=None,
                        help="true: sigmoid probe, mAP; false: softmax probe, accuracy [true when a train clip has several labels]")
    parser.add_argument("--l2-grid", default="1e-4,1e-3,1e-2,1e-1,1,10", help="L2 weights to choose from [1e-4,...,10]")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of train held out when there is no validation dump [0.2]")
    parser.add_argument("--seed", type=int, default=0, help="random init and hold-out seed [0]")
    return parser


def _parse_layer(value: str) -> str | int:
    if value == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--layer: expected all or a layer number, got {value!r}") from None


def load_probe_encoder(model_path: str, random_init: bool, seed: int, norm_mean: float | None, norm_std: float | None):
    """(encoder, normalisation, provenance) of a model.pt: its trained encoder, or with
    ``random_init`` the same architecture freshly initialised under ``torch.manual_seed(seed)``."""
    import torch

    from audiossl.models.checkpoint import load_model
    from audiossl.score.extract import fbank_kind, resolve_model_norm
    from audiossl.tasks.abs_task import AbsTask, get_task
    from audiossl.tasks.encoder import build_encoder, encoder_source, load_encoder

    obj = load_model(model_path)
    task = get_task(obj["task"])
    if getattr(task.build_encoder, "__func__", None) is AbsTask.build_encoder.__func__:
        raise ValueError(f"{model_path}: a model.pt of task {obj['task']!r} has no encoder to probe "
                         "(give a pre-trained BEATs/EAT model.pt or a fine-tuned one)")
    if not any(k.startswith("encoder.") for k in obj.get("model") or {}):
        raise ValueError(f"{model_path}: no encoder.* weights in the file (task {obj['task']!r}): nothing to probe")
    norm = resolve_model_norm(obj, norm_mean, norm_std, where=str(model_path))
    encoder_task, enc_cfg = encoder_source(obj, model_path)
    if random_init:
        torch.manual_seed(seed)
        encoder, _ = build_encoder(encoder_task, enc_cfg, where=f"encoder config of {model_path}")
        encoder.eval()
        logger.info("%s: %s encoder with random weights (seed %d): the from-scratch control", model_path, encoder_task, seed)
    else:
        encoder = load_encoder(obj, str(model_path))
    try:
        kind = fbank_kind(obj, str(model_path))  # the front end for raw audio dumps
    except ValueError:
        kind = None
    provenance = {
        "model": str(model_path),
        "fbank_kind": kind,
        "random_init": bool(random_init),
        "encoder_task": encoder_task,
        "encoder": {"num_layers": int(encoder.num_layers), "embed_dim": int(encoder.embed_dim)},
        "norm_mean": norm.mean,
        "norm_std": norm.std,
    }
    return encoder, norm, provenance, obj


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    if (args.norm_mean is None) != (args.norm_std is None):
        print("probe.py: give --norm-mean and --norm-std together", file=sys.stderr)
        return 2
    try:
        l2_grid = [float(v) for v in args.l2_grid.split(",") if v.strip()]
    except ValueError:
        print(f"probe.py: --l2-grid: expected comma-separated numbers, got {args.l2_grid!r}", file=sys.stderr)
        return 2
    if not l2_grid or any(v < 0 for v in l2_grid):
        print(f"probe.py: --l2-grid: expected non-negative numbers, got {args.l2_grid!r}", file=sys.stderr)
        return 2
    if args.baseline and (args.random_init or args.window_frames is not None or args.layer != "all"):
        print("probe.py: --random-init, --window-frames and --layer apply to --model, not to --baseline", file=sys.stderr)
        return 2
    logger.info("%s", " ".join(sys.argv))

    import torch

    from audiossl.score.probe import encoder_embeddings, logmel_stats, run_probe, takes_fixed_length

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.baseline:
        def features(d: Path):
            utts, x = logmel_stats(d, args.fbank_kind)
            return utts, {"logmel": x}

        info = {"method": "baseline_logmel", "model": None, "random_init": False}
    else:
        layer = _parse_layer(args.layer)
        encoder, norm, info, obj = load_probe_encoder(args.model, args.random_init, args.seed, args.norm_mean, args.norm_std)
        window = args.window_frames
        fixed = takes_fixed_length(encoder)
        if window is None:
            window = ((obj.get("config") or {}).get("data") or {}).get("target_frames") if fixed else 0
            if window is None:
                raise ValueError(
                    f"{args.model}: an EAT model takes fixed-length input, but its config has no data.target_frames: "
                    "give --window-frames (the training length: 1024 AudioSet, 512 ESC-50, 128 SPC-2; 0: whole clips)"
                )
        if window < 0:
            raise ValueError(f"--window-frames must be >= 0, got {window}")
        info.update(method="linear_probe", window_frames=int(window), pad_to_window=bool(fixed and window))
        kind = args.fbank_kind or info.get("fbank_kind")
        features = functools.partial(encoder_embeddings, encoder, norm, layers=layer, batch_size=args.batch_size,
                                     device=device, window_frames=window or None, pad_to_window=fixed, fbank_kind=kind)
    report = run_probe(features, args.train, args.test, args.out, valid_dir=args.valid, multi_label=args.multi_label,
                       l2_grid=l2_grid, holdout_fraction=args.holdout, seed=args.seed, fit_device=device, info=info)
    logger.info("%s: layer %s, l2 %g, valid %s %.4f; %s", args.out, report["layer"], report["l2"], report["valid_metric"],
                report["valid_metric_per_layer"][str(report["layer"])],
                "; ".join(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in t.items() if k in ("acc", "mAP") and v is not None)
                          for name, t in report["tests"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
