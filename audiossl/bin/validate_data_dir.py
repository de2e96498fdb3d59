"""Check a Kaldi-style data directory (see audiossl.data.datadir for the files and their format).

Usage:
    python -m audiossl.bin.validate_data_dir [--no-labels] [--no-durations] <data-dir>

e.g.:
    python -m audiossl.bin.validate_data_dir --no-durations data/train

Prints "<data-dir>: OK (N utterances, C classes)" and exits 0, or prints every problem found (each
naming its file and line) and exits 1.
"""
from __future__ import annotations

import argparse
import sys

from audiossl.data.datadir import load_data_dir, validate_data_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-labels", action="store_true", help="do not require utt2label and labels.txt")
    parser.add_argument("--no-durations", action="store_true", help="do not require utt2dur")
    parser.add_argument("data_dir", help="the data directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    problems = validate_data_dir(args.data_dir, labels=not args.no_labels, durations=not args.no_durations, strict=False)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{args.data_dir}: {len(problems)} problem(s) found", file=sys.stderr)
        return 1
    data = load_data_dir(args.data_dir)
    print(f"{args.data_dir}: OK ({len(data.utt_ids)} utterances, {data.num_classes} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
