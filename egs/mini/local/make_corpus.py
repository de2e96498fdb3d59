#!/usr/bin/env python3
"""Synthesise the mini corpus: short clips of a few sound classes that differ enough to learn.

Usage: local/make_corpus.py [--num-train 40] [--num-dev 8] [--num-test 8] [--seed 1] <corpus-dir>
e.g.:  local/make_corpus.py downloads/mini_corpus

Writes <corpus-dir>/<split>/<class>/<class>_<split>_<n>.wav (16 kHz mono, 16-bit) and
<corpus-dir>/meta.csv (path,split,label). Each class is a family of signals with random parameters
(pitch, rate, onset, gain, background noise), so a classifier has to learn the family, not a sample.
Deterministic for a given seed; a finished corpus (meta.csv present) is left as it is.
"""
import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
DURATION = 1.5  # seconds: 148 fbank frames, cropped to 128 (8 patch rows of 16 frames) in training


def _envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """A note that starts somewhere in the first third and lasts at least half the clip."""
    start = rng.integers(0, n // 3)
    length = rng.integers(n // 2, n - start + 1)
    env = np.zeros(n)
    ramp = min(400, length // 4)
    env[start : start + length] = 1.0
    env[start : start + ramp] = np.linspace(0, 1, ramp)
    env[start + length - ramp : start + length] = np.linspace(1, 0, ramp)
    return env


def harmonic_tone(t, rng):
    f0 = rng.uniform(180, 700)
    return sum(np.sin(2 * math.pi * k * f0 * t + rng.uniform(0, 2 * math.pi)) / k for k in range(1, 5))


def chirp(t, rng):
    f_start, f_end = rng.uniform(200, 600), rng.uniform(2500, 5000)
    if rng.random() < 0.5:
        f_start, f_end = f_end, f_start
    freq = f_start + (f_end - f_start) * t / t[-1]
    return np.sin(2 * math.pi * np.cumsum(freq) / SAMPLE_RATE)


def noise_band(t, rng):
    spec = np.fft.rfft(rng.standard_normal(len(t)))
    freqs = np.fft.rfftfreq(len(t), 1 / SAMPLE_RATE)
    centre = rng.uniform(1500, 5000)
    spec *= np.exp(-0.5 * ((freqs - centre) / rng.uniform(200, 600)) ** 2)
    out = np.fft.irfft(spec, n=len(t))
    return out / (np.abs(out).max() + 1e-9)


def click_train(t, rng):
    rate = rng.uniform(6, 20)
    out = np.zeros(len(t))
    period = int(SAMPLE_RATE / rate)
    decay = np.exp(-np.arange(200) / rng.uniform(10, 40))
    for onset in range(rng.integers(0, period), len(t) - 200, period):
        out[onset : onset + 200] += decay * rng.choice([-1, 1])
    return out


def am_tone(t, rng):
    carrier = np.sin(2 * math.pi * rng.uniform(800, 2000) * t)
    return carrier * (0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(3, 8) * t))


CLASSES = {
    "tone": harmonic_tone,
    "chirp": chirp,
    "noise_band": noise_band,
    "clicks": click_train,
    "am_tone": am_tone,
}


def make_clip(label: str, rng: np.random.Generator) -> np.ndarray:
    n = int(SAMPLE_RATE * DURATION)
    t = np.arange(n) / SAMPLE_RATE
    x = CLASSES[label](t, rng) * _envelope(n, rng)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.2, 0.8)
    x += rng.standard_normal(n) * 10 ** rng.uniform(-3.5, -2.0)  # background noise
    return np.clip(x, -1, 1).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--num-train", type=int, default=40, help="clips per class in train")
    parser.add_argument("--num-dev", type=int, default=8, help="clips per class in dev")
    parser.add_argument("--num-test", type=int, default=8, help="clips per class in test")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    meta = args.corpus_dir / "meta.csv"
    if meta.exists():
        print(f"{meta} exists: corpus already made", file=sys.stderr)
        return 0
    rng = np.random.default_rng(args.seed)
    rows = []
    for split, count in (("train", args.num_train), ("dev", args.num_dev), ("test", args.num_test)):
        for label in CLASSES:
            for i in range(count):
                path = args.corpus_dir / split / label / f"{label}_{split}_{i:04d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, make_clip(label, rng), SAMPLE_RATE, subtype="PCM_16")
                rows.append((str(path.resolve()), split, label))
    tmp = meta.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([("path", "split", "label"), *rows])
    tmp.rename(meta)
    print(f"wrote {len(rows)} clips of {len(CLASSES)} classes to {args.corpus_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
