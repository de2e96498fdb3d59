#!/usr/bin/env python3
"""Write data/{train,dev,test} from the mini corpus's meta.csv.

Usage: local/prepare_data.py <meta.csv> <data-root>
e.g.:  local/prepare_data.py downloads/mini_corpus/meta.csv data
"""
import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import soundfile as sf

from audiossl.data.datadir import validate_data_dir, write_kv, write_labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("meta", type=Path)
    parser.add_argument("data_root", type=Path)
    args = parser.parse_args()

    sets: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with open(args.meta, newline="") as f:
        for row in csv.DictReader(f):
            sets[row["split"]].append((row["path"], row["label"]))
    labels = sorted({label for rows in sets.values() for _, label in rows})
    for split, rows in sets.items():
        out = args.data_root / split
        out.mkdir(parents=True, exist_ok=True)
        wav, utt2label, utt2dur = {}, {}, {}
        for path, label in rows:
            utt = Path(path).stem
            wav[utt] = path
            utt2label[utt] = label
            utt2dur[utt] = f"{sf.info(path).duration:.3f}"
        write_kv(out / "wav.scp", wav)
        write_kv(out / "utt2label", utt2label)
        write_kv(out / "utt2dur", utt2dur)
        write_labels(out / "labels.txt", labels)
        validate_data_dir(out)
        print(f"{out}: {len(wav)} utterances, {len(labels)} classes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
