"""Draw training curves of an experiment (loss terms, LR, gradient norm, throughput, validation
metrics) as PNG files, one per scalar, train and valid curves of the same name together.

Usage:
    python -m audiossl.bin.plot_training exp/<tag> [--out exp/<tag>/plots]

e.g.:
    python -m audiossl.bin.plot_training exp/eat_pretrain --out exp/eat_pretrain/plots

Reads exp/<tag>/metrics.jsonl (written by the trainer), or the TensorBoard event files in
exp/<tag>/tensorboard/ when there is no metrics.jsonl.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from audiossl.train.logging import plot_metrics, read_metrics, setup_logging

logger = logging.getLogger("audiossl.bin.plot_training")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.plot_training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("exp_dir", help="experiment dir with metrics.jsonl or tensorboard/")
    parser.add_argument("--out", default=None, help="output dir for the PNG files (default: <exp_dir>/plots)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    exp = Path(args.exp_dir)
    out = Path(args.out) if args.out else exp / "plots"
    try:
        curves = read_metrics(exp)
    except FileNotFoundError as e:
        logger.error("%s", e)
        return 1
    if not curves:
        logger.error("%s: no scalars logged yet", exp)
        return 1
    written = plot_metrics(curves, out, title=exp.name)
    logger.info("wrote %d plots to %s: %s", len(written), out, ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
