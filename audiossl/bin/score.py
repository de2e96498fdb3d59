"""Score a fine-tuned model.pt on a feature dump, or average cross-validation folds.

Usage:
    python -m audiossl.bin.score --model exp/<tag>/model.pt --data dump/fbank_eat/eval \\
        --out exp/<tag>/scores/eval [--window-frames N] [--hop-frames N] [--reduce mean|max] \\
        [--batch-size 16] [--device cpu|cuda] [--norm-mean X --norm-std Y] [--multi-label true|false]
    python -m audiossl.bin.score --cv exp/<tag>_fold{1..5}/scores/test --out exp/<tag>_cv

The first form writes <out>/scores.{ark,scp}, metrics.json, per_class.tsv and, for single-label
data, confusion.tsv (see audiossl/score/results.py). The second writes <out>/metrics.json with the
mean and standard deviation of every metric across the fold score dirs.

Window defaults to the training config's data.target_frames (0 = whole clips); hop to half a window.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

import torch
from audiossl.bin.common import str2bool, setup_logging

logger = logging.getLogger("audiossl.bin.score")



def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.score",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--model", help="a fine-tuned model.pt (task finetune)")
    parser.add_argument("--data", help="a feature dump dir with feats.scp (and utt2label, labels.txt)")
    parser.add_argument("--cv", nargs="+", metavar="SCORE_DIR", help="fold score dirs to average instead of scoring")
    parser.add_argument("--out", required=True, help="output dir")
    parser.add_argument("--window-frames", type=int, default=None,
                        help="sliding-window length in frames; default: the training data.target_frames; 0: whole clips")
    parser.add_argument("--hop-frames", type=int, default=None, help="hop between windows [window / 2]")
    parser.add_argument("--reduce", choices=("mean", "max"), default="mean", help="how window scores combine [mean]")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass [16]")
    parser.add_argument("--device", default=None, help="cpu or cuda [cuda when available]")
    parser.add_argument("--norm-mean", type=float, default=None, help="feature mean [training config / stats.json]")
    parser.add_argument("--norm-std", type=float, default=None, help="feature std [training config / stats.json]")
    parser.add_argument("--multi-label", type=str2bool, default=None,
                        help="true: mAP-style metrics only; false: also accuracy and confusion [from the model]")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    from audiossl.score.results import write_cv_dir, write_score_dir

    if args.cv:
        if args.model or args.data:
            print("score.py: --cv averages score dirs; do not combine it with --model/--data", file=sys.stderr)
            return 2
        summary = write_cv_dir(args.cv, args.out)
        logger.info("cross-validation over %d folds: %s", summary["num_folds"],
                    ", ".join(f"{k} {summary[k]:.4f} ± {summary['std'][k]:.4f}" for k in summary["std"]))
        return 0
    if not (args.model and args.data):
        print("score.py: give --model and --data (or --cv SCORE_DIR ...); see --help", file=sys.stderr)
        return 2
    if (args.norm_mean is None) != (args.norm_std is None):
        print("score.py: give --norm-mean and --norm-std together", file=sys.stderr)
        return 2

    from audiossl.data.windows import default_hop
    from audiossl.score.extract import fbank_kind
    from audiossl.score.inference import resolve_norm, score_dump_dir
    from audiossl.tasks.finetune import load_finetuned
    from audiossl.models.checkpoint import load_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    obj = load_model(args.model)
    model = load_finetuned(obj, map_location=device, source=args.model)
    config = obj.get("config") or {}
    norm = resolve_norm(config, args.norm_mean, args.norm_std, where=args.model)
    window = args.window_frames
    if window is None:
        window = (config.get("data") or {}).get("target_frames") or 0
    multi_label = model.multi_label if args.multi_label is None else args.multi_label
    try:
        kind = fbank_kind(obj, args.model)  # the front end for a raw audio dump
    except ValueError:
        kind = None  # then only fbank dumps can be scored
    result = score_dump_dir(model, args.data, model.label_names, norm, window, args.hop_frames,
                            args.reduce, args.batch_size, device, fbank_kind=kind)
    info = {
        "model": args.model,
        "data": args.data,
        "window_frames": window,
        "hop_frames": (args.hop_frames or default_hop(window)) if window else None,
        "reduce": args.reduce,
        "norm_mean": norm.mean,
        "norm_std": norm.std,
    }
    summary = write_score_dir(result, args.out, multi_label, info)
    shown = {k: summary[k] for k in ("mAP", "mAUC", "d_prime", "acc", "top5_acc") if k in summary}
    logger.info("%s on %s: %s", args.model, args.data, json.dumps(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
