"""Write the recipe's RESULTS.md and the scoring plots from every scored experiment.

Usage:
    python -m audiossl.bin.make_results --exp exp --out RESULTS.md [--recipe NAME] [--plots true|false]
        [--plot-training true|false]

Reads exp/<tag>/scores/<set>/metrics.json (and exp/<tag>/metrics.json of cross-validation
averages), draws exp/<tag>/plots/per_class_ap_<set>.png and, for single-label sets,
confusion_<set>.png, and writes RESULTS.md: our numbers beside the published ones (BEATs, EAT,
Audio-MAE), with the config, init checkpoint and commit of each row. --plot-training also runs
python -m audiossl.bin.plot_training on each experiment (the template recipe does that itself).
Run it in the recipe dir; the recipe name defaults to that dir's name.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path
from audiossl.bin.common import str2bool, setup_logging

logger = logging.getLogger("audiossl.bin.make_results")



def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.make_results",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--exp", default="exp", help="the experiments dir [exp]")
    parser.add_argument("--out", default="RESULTS.md", help="the file to write [RESULTS.md]")
    parser.add_argument("--recipe", default=None, help="recipe name for matching published benchmarks [the out file's dir name]")
    parser.add_argument("--plots", type=str2bool, default=True, help="draw per-class AP and confusion plots [true]")
    parser.add_argument("--plot-training", type=str2bool, default=False,
                        help="also run audiossl.bin.plot_training on each experiment [false]")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    from audiossl.score.results import write_results_md

    exp = Path(args.exp)
    if not exp.is_dir():
        print(f"make_results.py: {exp}: no such directory; run the training and scoring stages first", file=sys.stderr)
        return 1
    if args.plot_training:
        if importlib.util.find_spec("audiossl.bin.plot_training") is None:
            logger.warning("audiossl.bin.plot_training is not available; no training curves")
        else:
            for d in sorted(p for p in exp.iterdir() if p.is_dir()):
                if (d / "metrics.jsonl").is_file() or (d / "tensorboard").is_dir():
                    subprocess.run([sys.executable, "-m", "audiossl.bin.plot_training", str(d), "--out", str(d / "plots")],
                                   check=True)
    rows = write_results_md(exp, args.out, recipe=args.recipe, plots=args.plots)
    logger.info("wrote %s with %d result rows", args.out, len(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
