#!/usr/bin/env python3
"""Synthesise environmental sounds of 20 classes, in the layout of ESC-50.

Usage: local/make_synth_corpus.py [--clips-per-class 40] [--seed 1] [--nj 2] <out-dir>
e.g.:  local/make_synth_corpus.py downloads/esc_synth

Writes <out-dir>/meta/esc50.csv (filename,fold,target,category,esc10,src_file,take) and
<out-dir>/audio/<fold>-<src_file>-<take>-<target>.wav (5.0 s, 44.1 kHz mono, 16-bit), as the ESC-50
archive has them, so audiossl.bin.prepare_esc50 reads it unchanged.

Each class is a procedural synthesiser. Its parameters (pitch, resonances, rates, ...) are drawn per
source recording (src_file, six digits), and each source yields 3-5 takes (A, B, ...) that share them
but have their own event times, jitter and noise; all takes of a source are in one fold, and the five
folds hold the same number of clips of every class (as far as --clips-per-class allows). Classes pair
up in spectrum and differ in time structure (clock ticks and typing, knocks and footsteps, siren and
whistle, rain and fire, engine and helicopter, ...), so that the average spectrum alone does not
separate them. Every clip has a low background ambience, a random gain and a source-wide channel
tilt; about 30% are shorter events padded with digital silence to 5 s, as in ESC-50. Deterministic for
a given seed (each clip is seeded from the seed, source and take, so --nj does not change a byte); a
finished corpus (meta/esc50.csv present) is left as it is, and an interrupted one is resumed.
"""
import argparse
import csv
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

PROG = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "make_synth_corpus.py"
SR = 44100
CLIP = 5 * SR  # 5.0 s
NUM_FOLDS = 5
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
OPTIONS = ".options"
SHORT_FRACTION = 0.3  # clips whose event is shorter than 5 s, padded with digital silence
TAU = 2 * math.pi


def say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def seed_of(*parts) -> int:
    """A 64-bit seed from any parts: the same parts give the same seed in every process."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


# ---------------------------------------------------------------------------------------------- helpers


def shape(x: np.ndarray, gain) -> np.ndarray:
    """x filtered by the response gain(f) (f in Hz, complex or real), zero-padded so it does not wrap."""
    n = len(x)
    nfft = 1 << int(math.ceil(math.log2(n + 4096)))
    f = np.fft.rfftfreq(nfft, 1 / SR)
    return np.fft.irfft(np.fft.rfft(x, nfft) * gain(f), nfft)[:n]


def band(lo: float, hi: float, order: int = 2):
    """A Butterworth-like band-pass magnitude response (lo or hi may be None)."""
    def gain(f):
        g = np.ones_like(f)
        if lo:
            g = g / np.sqrt(1 + (lo / np.maximum(f, 1e-3)) ** (2 * order))
        if hi:
            g = g / np.sqrt(1 + (f / hi) ** (2 * order))
        return g
    return gain


def formants(peaks, floor: float = 0.05):
    """Resonance peaks [(centre Hz, bandwidth Hz, gain)], over a floor: a magnitude response."""
    def gain(f):
        g = np.full_like(f, floor)
        for fc, bw, a in peaks:
            g = g + a / (1 + ((f - fc) / (bw / 2)) ** 2)
        return g
    return gain


def colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec *= 1 / np.maximum(f, 20.0) ** (exponent / 2)
    spec[0] = 0
    return unit_rms(np.fft.irfft(spec, n))


def unit_rms(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def smooth_random(n: int, rng: np.random.Generator, cutoff: float) -> np.ndarray:
    """A slowly varying random curve (frequencies below cutoff Hz), scaled to [-1, 1]."""
    m = max(8, int(n * cutoff * 8 / SR))  # a coarse grid, then linear interpolation
    coarse = rng.standard_normal(m + 4)
    k = np.hanning(9)
    coarse = np.convolve(coarse, k / k.sum(), mode="same")
    x = np.interp(np.linspace(0, m, n), np.arange(m + 4), coarse)
    return x / (np.abs(x).max() + 1e-12)


def harmonics(freq: np.ndarray, rng: np.random.Generator, num: int, rolloff: float, fmax: float = 10000.0) -> np.ndarray:
    """sum_k sin(k * phase) / k**rolloff of the frequency track freq (Hz per sample), below fmax."""
    phase = TAU * np.cumsum(freq) / SR
    top = float(np.max(freq))
    out = np.zeros(len(freq))
    for k in range(1, num + 1):
        if k * top > fmax:
            break
        out += np.sin(k * phase + rng.uniform(0, TAU)) / k**rolloff
    return out


def resonators(length: int, freqs, taus, amps) -> np.ndarray:
    """An impulse response: decaying sinusoids (Hz, seconds, amplitudes)."""
    t = np.arange(length) / SR
    out = np.zeros(length)
    for f, tau, a in zip(freqs, taus, amps):
        out += a * np.exp(-t / tau) * np.sin(TAU * f * t)
    return out


def add_at(out: np.ndarray, event: np.ndarray, at: int) -> None:
    """out[at:at+len(event)] += event, cut at both ends."""
    if at >= len(out) or at + len(event) <= 0:
        return
    lo = max(0, -at)
    hi = min(len(event), len(out) - at)
    out[at + lo:at + hi] += event[lo:hi]


def impulses(n: int, times, amps) -> np.ndarray:
    x = np.zeros(n)
    idx = (np.asarray(times) * SR).astype(int)
    keep = (idx >= 0) & (idx < n)
    np.add.at(x, idx[keep], np.asarray(amps)[keep])
    return x


def convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    nfft = 1 << int(math.ceil(math.log2(len(x) + len(kernel))))
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(kernel, nfft), nfft)[:len(x)]


def poisson_times(rate: float, duration: float, rng: np.random.Generator, start: float = 0.0) -> np.ndarray:
    count = rng.poisson(rate * max(0.0, duration - start))
    return np.sort(rng.uniform(start, duration, count))


def raised_cos(length: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(length)
    attack, release = min(attack, length // 2), min(release, length // 2)
    if attack:
        env[:attack] = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, attack))
    if release:
        env[length - release:] = 0.5 + 0.5 * np.cos(np.linspace(0, math.pi, release))
    return env


# ---------------------------------------------------------------------------------------------- classes
# Each class: src(rng) -> parameters of a source recording; render(params, rng, n) -> n samples.


def dog_bark_src(r):
    return dict(f0=r.uniform(250, 600), drop=r.uniform(0.55, 0.9), dur=r.uniform(0.08, 0.22),
                f1=r.uniform(500, 1000), f2=r.uniform(1300, 2400), noise=r.uniform(0.1, 0.5),
                gap=r.uniform(0.18, 0.4))


def dog_bark(p, r, n):
    out, dur = np.zeros(n), n / SR
    t = r.uniform(0, min(1.0, dur * 0.4))
    for _ in range(int(r.integers(1, 4))):  # 1-3 series of 1-5 barks
        for _ in range(int(r.integers(1, 6))):
            if t > dur - 0.1:
                break
            length = int(p["dur"] * r.uniform(0.8, 1.25) * SR)
            u = np.linspace(0, 1, length)
            f = p["f0"] * r.uniform(0.9, 1.1) * (1 + 0.15 * np.sin(math.pi * u)) * (1 + (p["drop"] - 1) * u)
            src = harmonics(f, r, 16, 1.0) + p["noise"] * r.standard_normal(length)
            env = (1 - np.exp(-u * length / (0.004 * SR))) * (1 - u) ** 1.5
            add_at(out, src * env * r.uniform(0.6, 1.0), int(t * SR))
            t += p["gap"] * r.uniform(0.8, 1.4)
        t += r.uniform(0.4, 1.5)
    return shape(out, formants([(p["f1"], 300, 6), (p["f2"], 500, 4)]))


def rooster_src(r):
    return dict(f0=r.uniform(350, 650), f1=r.uniform(800, 1500), f2=r.uniform(2000, 3200),
                syl=np.array([0.12, 0.12, 0.18, 0.7]) * r.uniform(0.8, 1.3), rough=r.uniform(40, 90),
                rough_depth=r.uniform(0.2, 0.6), rise=r.uniform(1.15, 1.45))


def rooster(p, r, n):
    out, dur = np.zeros(n), n / SR
    total = p["syl"].sum() + 0.1
    crows = 1 if r.random() < 0.7 or dur < 2 * total + 0.5 else 2
    starts = np.sort(r.uniform(0, max(0.01, dur - total), crows))
    for start in starts:
        segs = []
        for i, d in enumerate(p["syl"] * r.uniform(0.9, 1.1)):
            length = int(d * SR)
            u = np.linspace(0, 1, length)
            level = 1 + (p["rise"] - 1) * i / 3
            if i < 3:
                f = p["f0"] * level * (1 + 0.08 * np.sin(math.pi * u))
            else:
                f = p["f0"] * level * (1 + 0.15 * np.sin(math.pi * np.minimum(u * 1.6, 1))) * (1 - 0.3 * u**3)
            f = f * r.uniform(0.95, 1.05)
            x = harmonics(f, r, 14, 1.2) * (1 + p["rough_depth"] * np.sin(TAU * p["rough"] * np.arange(length) / SR))
            segs += [x * raised_cos(length, int(0.02 * SR), int(0.04 * SR)), np.zeros(int(0.03 * SR))]
        add_at(out, np.concatenate(segs) * r.uniform(0.7, 1.0), int(start * SR))
    return shape(out, formants([(p["f1"], 400, 6), (p["f2"], 600, 3)]))


def bird_chirp_src(r):
    return dict(base=r.uniform(1800, 4500), span=r.uniform(500, 2500) * (1 if r.random() < 0.8 else -1),
                note=r.uniform(0.02, 0.07), rate=r.uniform(8, 20), notes=int(r.integers(3, 11)),
                h2=r.uniform(0, 0.3), gap=r.uniform(0.3, 1.2))


def bird_chirp(p, r, n):
    out, dur = np.zeros(n), n / SR
    t = r.uniform(0, 0.6)
    while t < dur - 0.1:
        f0 = p["base"] * r.uniform(0.93, 1.07)
        for _ in range(max(1, p["notes"] + int(r.integers(-2, 3)))):
            length = int(p["note"] * r.uniform(0.85, 1.15) * SR)
            u = np.linspace(0, 1, length)
            f = f0 + p["span"] * r.uniform(0.8, 1.2) * u
            ph = TAU * np.cumsum(f) / SR
            add_at(out, (np.sin(ph) + p["h2"] * np.sin(2 * ph)) * np.sin(math.pi * u) ** 2 * r.uniform(0.5, 1), int(t * SR))
            t += 1 / (p["rate"] * r.uniform(0.9, 1.1))
        t += r.exponential(p["gap"]) + 0.1
    return out


def crickets_src(r):
    insects = []
    for i in range(1 if r.random() < 0.5 else 2):
        continuous = r.random() < 0.3
        insects.append(dict(fc=r.uniform(3500, 6500), pulse=r.uniform(20, 60), duty=r.uniform(0.3, 0.6),
                            chirp=r.uniform(1, 4), per_chirp=200 if continuous else int(r.integers(2, 9)),
                            level=1.0 if i == 0 else r.uniform(0.2, 0.6)))
    return dict(insects=insects)


def crickets(p, r, n):
    t = np.arange(n) / SR
    out = np.zeros(n)
    k = np.hanning(int(0.002 * SR))
    for ins in p["insects"]:
        pulse = ins["pulse"] * r.uniform(0.97, 1.03)
        gate = ((t * pulse + r.uniform()) % 1 < ins["duty"]).astype(float)
        chirp = ins["chirp"] * r.uniform(0.95, 1.05)
        on = min(0.95, ins["per_chirp"] / pulse * chirp)
        gate *= ((t * chirp + r.uniform()) % 1 < on)
        gate = np.convolve(gate, k / k.sum(), mode="same")
        fc = ins["fc"] * r.uniform(0.98, 1.02)
        tone = np.sin(TAU * fc * t) + 0.1 * np.sin(TAU * 2 * fc * t)
        out += ins["level"] * tone * gate * (1 + 0.3 * smooth_random(n, r, 0.5))
    return out


def siren_src(r):
    wail = r.random() < 0.6
    return dict(centre=r.uniform(700, 1400), depth=r.uniform(150, 500),
                rate=r.uniform(0.12, 0.5) if wail else r.uniform(2, 5),
                rolloff=r.uniform(1.0, 2.0), harm=int(r.integers(1, 7)))


def siren(p, r, n):
    t = np.arange(n) / SR
    tc, width = r.uniform(0, n / SR), r.uniform(1, 5)
    doppler = 1 + 0.03 * np.tanh(-(t - tc) / width) * (1 if r.random() < 0.5 else 0)
    f = (p["centre"] + p["depth"] * np.sin(TAU * p["rate"] * r.uniform(0.95, 1.05) * t + r.uniform(0, TAU))) * doppler
    env = 0.3 + 0.7 * np.exp(-0.5 * ((t - tc) / width) ** 2)
    return harmonics(f, r, p["harm"], p["rolloff"]) * env


def whistle_src(r):
    return dict(base=r.uniform(700, 2200), vib=r.uniform(4, 7), vib_depth=r.uniform(0.003, 0.02),
                breath=r.uniform(0.02, 0.15), note=r.uniform(0.2, 0.8), glide=r.uniform(0.02, 0.1))


def whistle(p, r, n):
    freq, amp = np.zeros(n), np.zeros(n)
    pos, k = int(r.uniform(0, 0.8) * SR), int(r.integers(-5, 8))
    while pos < n:
        length = int(p["note"] * r.uniform(0.5, 1.8) * SR)
        freq[pos:pos + length] = p["base"] * 2 ** (k / 12)
        amp[pos:pos + length] = r.uniform(0.6, 1.0)
        pos += length
        if r.random() < 0.25:  # a breath between phrases
            gap = int(r.uniform(0.1, 0.6) * SR)
            freq[pos:pos + gap] = p["base"] * 2 ** (k / 12)
            pos += gap
        k = int(np.clip(k + r.integers(-4, 5), -5, 7))
    freq[freq == 0] = p["base"]
    w = max(1, int(p["glide"] * SR))
    kern = np.hanning(w) / np.hanning(w).sum()
    freq = np.convolve(np.pad(freq, w, mode="edge"), kern, mode="same")[w:-w]
    amp = np.convolve(amp, np.hanning(int(0.02 * SR)) / np.hanning(int(0.02 * SR)).sum(), mode="same")
    t = np.arange(n) / SR
    freq = freq * (1 + p["vib_depth"] * np.sin(TAU * p["vib"] * t))
    ph = TAU * np.cumsum(freq) / SR
    breath = shape(r.standard_normal(n), band(p["base"] * 0.7, p["base"] * 2.5)) * p["breath"] * 3
    return (np.sin(ph) + 0.05 * np.sin(2 * ph) + breath) * amp


def church_bells_src(r):
    bells = []
    for i in range(1 if r.random() < 0.6 else 2):
        f = r.uniform(250, 700) * (1 if i == 0 else r.uniform(1.1, 1.5))
        ratios = np.array([0.5, 1, 1.19, 1.5, 2, 2.5, 2.66, 3, 4.2]) * (1 + r.uniform(-0.02, 0.02, 9))
        bells.append(dict(freqs=f * ratios, amps=r.uniform(0.2, 1.0, 9), tau=r.uniform(1.5, 3.5)))
    return dict(bells=bells, interval=r.uniform(0.7, 1.6))


def church_bells(p, r, n):
    out = np.zeros(n)
    t, i = r.uniform(0, min(1.0, n / SR / 2)), 0
    while t < n / SR - 0.2:
        bell = p["bells"][i % len(p["bells"])]
        length = min(n - int(t * SR), int(4 * bell["tau"] * SR))
        taus = bell["tau"] / (bell["freqs"] / bell["freqs"][1]) ** 0.7
        strike = resonators(length, bell["freqs"] * r.uniform(0.998, 1.002), taus, bell["amps"])
        add_at(out, strike * r.uniform(0.7, 1.0), int(t * SR))
        t += p["interval"] * r.uniform(0.95, 1.05)
        i += 1
    return out


def glass_clink_src(r):
    return dict(f1=r.uniform(1800, 4500), ratios=np.array([1, r.uniform(2.3, 2.9), r.uniform(4.5, 5.6), r.uniform(7, 9)]),
                amps=np.array([1, r.uniform(0.3, 0.8), r.uniform(0.1, 0.5), r.uniform(0.05, 0.3)]),
                tau=r.uniform(0.08, 0.5))


def glass_clink(p, r, n):
    out, dur = np.zeros(n), n / SR
    for t in np.sort(r.uniform(0, dur - 0.3, int(r.integers(1, 5)))):
        for _ in range(2 if r.random() < 0.3 else 1):
            freqs = p["f1"] * r.uniform(0.97, 1.03) * p["ratios"]
            keep = freqs < 18000
            length = int(min(4 * p["tau"], dur - t) * SR)
            if length <= 0:
                break
            ev = resonators(length, freqs[keep], p["tau"] / p["ratios"][keep] ** 0.5, p["amps"][keep])
            ev[: int(0.002 * SR)] += 0.3 * r.standard_normal(int(0.002 * SR))
            add_at(out, ev * r.uniform(0.5, 1.0), int(t * SR))
            t += r.uniform(0.03, 0.1)
    return out


def _click_src(r):
    """Click resonances shared by clock ticks and key presses: same distribution, so the same spectrum."""
    return dict(freqs=r.uniform(1500, 6500, 3), taus=r.uniform(0.0005, 0.004, 3), amps=r.uniform(0.3, 1.0, 3))


def _click(p, r, jitter: float, scale: float = 1.0) -> np.ndarray:
    ev = resonators(int(0.03 * SR), p["freqs"] * scale * r.uniform(1 - jitter, 1 + jitter, 3), p["taus"], p["amps"])
    ev[: int(0.0005 * SR)] += 0.2 * r.standard_normal(int(0.0005 * SR))
    return ev


def clock_tick_src(r):
    p = _click_src(r)
    p.update(period=r.uniform(0.45, 1.05) if r.random() < 0.7 else r.uniform(0.2, 0.35),
             tock=r.uniform(0.85, 1.0), tock_amp=r.uniform(0.5, 1.0))
    return p


def clock_tick(p, r, n):
    out = np.zeros(n)
    t, i = r.uniform(0, p["period"]), 0
    while t < n / SR:
        scale, amp = (1.0, 1.0) if i % 2 == 0 else (p["tock"], p["tock_amp"])
        add_at(out, _click(p, r, 0.01, scale) * amp * r.uniform(0.95, 1.05), int((t + r.normal(0, 0.0005)) * SR))
        t += p["period"]
        i += 1
    return out


def keyboard_typing_src(r):
    p = _click_src(r)
    p.update(rate=r.uniform(4, 10), word=r.uniform(3, 8), pause=r.uniform(0.1, 0.6), release=r.uniform(0.2, 0.5))
    return p


def keyboard_typing(p, r, n):
    out, dur = np.zeros(n), n / SR
    t = r.uniform(0, 0.5)
    while t < dur:
        for _ in range(max(1, int(r.poisson(p["word"])))):
            add_at(out, _click(p, r, 0.1) * r.uniform(0.4, 1.0), int(t * SR))
            add_at(out, _click(p, r, 0.1) * p["release"] * r.uniform(0.5, 1.0), int((t + r.uniform(0.06, 0.12)) * SR))
            t += r.gamma(4.0, 1 / (4.0 * p["rate"]))
        add_at(out, _click(p, r, 0.05, 0.6) * 0.8, int(t * SR))  # the space bar, lower
        t += p["pause"] * r.uniform(0.5, 2.0) + (r.uniform(0.5, 1.5) if r.random() < 0.15 else 0)
    return out


def _thud_src(r, lo, hi):
    return dict(body=r.uniform(lo, hi), body_tau=r.uniform(0.015, 0.06), wood=r.uniform(300, 1500, 2),
                wood_tau=r.uniform(0.005, 0.02, 2), wood_amp=r.uniform(0.1, 0.6, 2))


def _thud(p, r, scale=1.0):
    length = int(0.25 * SR)
    j = r.uniform(0.95, 1.05)
    ev = resonators(length, [p["body"] * j * scale, *(p["wood"] * j)], [p["body_tau"], *p["wood_tau"]],
                    [1.0, *p["wood_amp"]])
    burst = int(0.003 * SR)
    ev[:burst] += 0.3 * r.standard_normal(burst) * np.linspace(1, 0, burst)
    return ev


def door_knock_src(r):
    p = _thud_src(r, 80, 220)
    p.update(spacing=r.uniform(0.12, 0.28))
    return p


def door_knock(p, r, n):
    out, dur = np.zeros(n), n / SR
    t = r.uniform(0, min(1.5, dur * 0.4))
    for _ in range(int(r.integers(1, 4))):
        if t > dur - 0.3:
            break
        for k in range(int(r.integers(2, 6))):
            add_at(out, _thud(p, r) * r.uniform(0.6, 1.0), int(t * SR))
            t += p["spacing"] * r.uniform(0.85, 1.15)
        t += r.uniform(0.8, 2.0)
    return out


def footsteps_src(r):
    p = _thud_src(r, 60, 180)
    p.update(rate=r.uniform(1.3, 2.3), scrape=r.uniform(0, 0.5), heel=r.random() < 0.6, scrape_band=r.uniform(800, 3000))
    return p


def footsteps(p, r, n):
    out, dur = np.zeros(n), n / SR
    t = r.uniform(0, 0.7)
    stop = dur if r.random() < 0.7 else max(t + 0.1, r.uniform(0.4, 1.0) * dur)  # or the walker stops
    a0, a1 = r.uniform(0.3, 1.0), r.uniform(0.3, 1.0)
    while t < stop:
        amp = a0 + (a1 - a0) * t / dur
        step = _thud(p, r)
        if p["heel"]:
            add_at(step, _thud(p, r, 1.2) * 0.5, int(r.uniform(0.04, 0.09) * SR))
        if p["scrape"] > 0.05:
            length = int(r.uniform(0.05, 0.15) * SR)
            scrape = shape(r.standard_normal(length), band(p["scrape_band"] * 0.5, p["scrape_band"] * 2))
            add_at(step, scrape * p["scrape"] * 0.3 * np.hanning(length), 0)
        add_at(out, step * amp, int(t * SR))
        t += 1 / p["rate"] * r.uniform(0.85, 1.15)
    return out


def rain_src(r):
    return dict(exponent=r.uniform(0.3, 1.2), lo=r.uniform(200, 1000), hi=r.uniform(3000, 10000),
                drops=r.uniform(40, 300), drop_lo=r.uniform(1500, 3000), drop_hi=r.uniform(3000, 7000),
                drop_level=r.uniform(0.5, 2.0), noise_level=r.uniform(0.3, 1.0))


def rain(p, r, n):
    dur = n / SR
    x = shape(colored(n, r, p["exponent"]), band(p["lo"], p["hi"])) * p["noise_level"]
    drops = np.zeros(n)
    for f in r.uniform(p["drop_lo"], p["drop_hi"], 5):
        times = poisson_times(p["drops"] / 5, dur, r)
        kernel = resonators(int(0.01 * SR), [f], [r.uniform(0.001, 0.004)], [1.0])
        drops += convolve(impulses(n, times, r.pareto(3.0, len(times)) + 0.2), kernel)
    drops = drops / (np.sqrt(np.mean(drops**2)) + 1e-12)
    return (x + p["drop_level"] * 0.3 * drops) * (1 + 0.3 * smooth_random(n, r, 0.2))


def wind_src(r):
    return dict(centre=r.uniform(200, 1500), width=r.uniform(0.3, 1.0), gust=r.uniform(0.1, 0.5),
                depth=r.uniform(0.5, 0.95), whistle=r.uniform(500, 1500) if r.random() < 0.3 else 0.0)


def wind(p, r, n):
    c = p["centre"]
    gust = 0.5 + 0.5 * smooth_random(n, r, p["gust"])  # 0..1
    low = shape(r.standard_normal(n), band(c * 0.7 * (1 - p["width"] / 2), c * 0.7 * (1 + p["width"] / 2)))
    high = shape(r.standard_normal(n), band(c * 1.4 * (1 - p["width"] / 2), c * 1.4 * (1 + p["width"] / 2)))
    x = unit_rms(low) * (1 - gust) + unit_rms(high) * gust
    x *= 1 - p["depth"] + p["depth"] * gust
    if p["whistle"]:
        tone = shape(r.standard_normal(n), formants([(p["whistle"], p["whistle"] * 0.02, 1.0)], floor=0.0))
        x += unit_rms(tone) * 0.3 * gust**2
    return x


def crackling_fire_src(r):
    return dict(rumble=r.uniform(150, 500), rumble_level=r.uniform(0.2, 0.6), hiss=r.uniform(0, 0.15),
                rate=r.uniform(4, 25), bright=r.uniform(1000, 6000), pops=r.uniform(0.2, 2))


def crackling_fire(p, r, n):
    dur = n / SR
    x = shape(colored(n, r, 2.0), band(None, p["rumble"])) * p["rumble_level"]
    x += shape(r.standard_normal(n), band(3000, None)) * p["hiss"]
    density = 1 + 0.8 * smooth_random(n, r, 0.7)
    crackles = np.zeros(n)
    for scale, rate in ((1.0, p["rate"]), (0.4, p["pops"])):
        times = poisson_times(rate * 1.8, dur, r)
        times = times[r.uniform(0, 2, len(times)) < density[(times * SR).astype(int).clip(0, n - 1)]]
        length = int(0.003 * SR)
        kernel = r.standard_normal(length) * np.exp(-np.arange(length) / (0.0007 * SR))
        kernel = shape(kernel, band(p["bright"] * scale * 0.5, p["bright"] * scale * 2))
        crackles += convolve(impulses(n, times, r.pareto(2.0, len(times)) + 0.5), kernel)
    return unit_rms(x) * 0.3 + crackles / (np.abs(crackles).max() + 1e-12)


def water_drops_src(r):
    return dict(f0=r.uniform(500, 1600), rise=r.uniform(1.5, 3.0), dur=r.uniform(0.015, 0.06),
                rate=r.uniform(1.5, 6), regular=r.random() < 0.5, tail=r.uniform(0.01, 0.05))


def water_drops(p, r, n):
    out, dur = np.zeros(n), n / SR
    if p["regular"]:
        times = np.arange(r.uniform(0, 1 / p["rate"]), dur, 1 / p["rate"])
        times = times + r.normal(0, 0.03 / p["rate"], len(times))
    else:
        times = poisson_times(p["rate"], dur, r)
    if len(times) == 0:
        times = r.uniform(0, dur * 0.8, 1)
    for t in times:
        length = int((p["dur"] + 4 * p["tail"]) * SR)
        u = np.arange(length) / SR
        f = p["f0"] * r.uniform(0.8, 1.25) * (1 + (p["rise"] - 1) * np.sqrt(np.minimum(u / p["dur"], 1)))
        env = np.exp(-np.maximum(u - p["dur"], 0) / p["tail"]) * (1 - np.exp(-u / 0.001))
        ev = np.sin(TAU * np.cumsum(f) / SR) * env
        splash = int(0.002 * SR)
        ev[:splash] += 0.2 * r.standard_normal(splash)
        add_at(out, ev * r.uniform(0.4, 1.0), int(t * SR))
    return out


def engine_src(r):
    return dict(f0=r.uniform(25, 90), rolloff=r.uniform(0.7, 1.5), f1=r.uniform(150, 600), f2=r.uniform(600, 1200),
                am=r.uniform(1, 8), am_depth=r.uniform(0.05, 0.3), noise=r.uniform(0.05, 0.3), vary=r.uniform(0.05, 0.25))


def engine(p, r, n):
    f = p["f0"] * (1 + p["vary"] * smooth_random(n, r, 0.3))
    if r.random() < 0.3:  # revving
        f = f * (1 + 0.5 * np.clip(np.linspace(-1, 2, n) - r.uniform(0, 1), 0, 1))
    x = harmonics(f, r, 40, p["rolloff"], fmax=3000) + p["noise"] * 3 * r.standard_normal(n)
    x = shape(x, formants([(p["f1"], 200, 3), (p["f2"], 400, 2)], floor=0.3))
    t = np.arange(n) / SR
    return x * (1 + p["am_depth"] * np.sin(TAU * p["am"] * t + r.uniform(0, TAU)))


def helicopter_src(r):
    return dict(rate=r.uniform(4, 9), lo=r.uniform(150, 500), hi=r.uniform(800, 2500), decay=r.uniform(0.01, 0.04),
                whine=r.uniform(1500, 4500), whine_level=r.uniform(0, 0.1), floor=r.uniform(0.1, 0.4))


def helicopter(p, r, n):
    dur = n / SR
    t = np.arange(n) / SR
    rate = p["rate"] * r.uniform(0.95, 1.05)
    times = np.arange(r.uniform(0, 1 / rate), dur, 1 / rate)
    times = times + r.normal(0, 0.003, len(times))
    length = int(5 * p["decay"] * SR)
    kernel = r.standard_normal(length) * np.exp(-np.arange(length) / (p["decay"] * SR))
    kernel = shape(kernel, band(p["lo"], p["hi"]))
    thumps = unit_rms(convolve(impulses(n, times, r.uniform(0.8, 1.0, len(times))), kernel))
    floor = shape(colored(n, r, 1.5), band(80, 3000))
    whine = np.sin(TAU * np.cumsum(np.full(n, p["whine"]) * (1 + 0.01 * smooth_random(n, r, 0.2))) / SR)
    mode = r.integers(3)  # approaching, receding, hovering
    env = np.linspace(0.3, 1, n) if mode == 0 else np.linspace(1, 0.3, n) if mode == 1 else np.ones(n)
    return (thumps + p["floor"] * floor + p["whine_level"] * 10 * whine) * env * (1 + 0.05 * np.sin(TAU * t))


def phone_ring_src(r):
    mode = "trill" if r.random() < 0.5 else "dual"
    f1 = r.uniform(700, 1300) if mode == "trill" else r.uniform(400, 500)
    return dict(mode=mode, f1=f1, f2=f1 * (r.uniform(1.15, 1.5) if mode == "trill" else r.uniform(1.05, 1.2)),
                alt=r.uniform(10, 25), on=r.uniform(0.4, 2.0), off=r.uniform(0.2, 4.0), double=r.random() < 0.3,
                odd=r.uniform(0, 0.5))


def phone_ring(p, r, n):
    t = np.arange(n) / SR
    tone = lambda f: np.sin(TAU * f * t) + p["odd"] * np.sin(3 * TAU * f * t) / 3 + p["odd"] * np.sin(5 * TAU * f * t) / 5
    if p["mode"] == "trill":
        sel = (t * p["alt"] + r.uniform()) % 1 < 0.5
        x = np.where(sel, tone(p["f1"]), tone(p["f2"]))
    else:
        x = tone(p["f1"]) + tone(p["f2"])
    first = r.uniform(0, min(1.0, n / SR / 2))  # the first ring starts within the first second
    if p["double"]:  # two short rings, then the pause
        on, period = p["on"] / 2, p["on"] + 0.2 + p["off"]
        phase = (t - first) % period
        gate = (phase < on) | ((phase > on + 0.2) & (phase < 2 * on + 0.2))
    else:
        period = p["on"] + p["off"]
        gate = (t - first) % period < p["on"]
    k = np.hanning(int(0.01 * SR))
    return x * np.convolve(gate.astype(float), k / k.sum(), mode="same")


def snoring_src(r):
    return dict(period=r.uniform(2.5, 5.0), frac=r.uniform(0.25, 0.45), flutter=r.uniform(20, 70),
                flutter_depth=r.uniform(0.3, 0.9), f1=r.uniform(100, 350), f2=r.uniform(500, 1200),
                exhale=r.uniform(0.05, 0.4), voiced=r.uniform(0, 0.5))


def snoring(p, r, n):
    out, dur = np.zeros(n), n / SR
    half = p["period"] * p["frac"] / 2  # at least half an inhale snore lies inside the clip
    t = r.uniform(-half, min(p["period"], dur) - half)
    while t < dur:
        period = p["period"] * r.uniform(0.9, 1.1)
        inhale = int(period * p["frac"] * SR)
        u = np.arange(inhale) / SR
        fl = p["flutter"] * r.uniform(0.9, 1.1)
        am = np.maximum(0, 1 + p["flutter_depth"] * np.sin(TAU * fl * u)) ** 2
        snore = r.standard_normal(inhale) * am + p["voiced"] * harmonics(np.full(inhale, fl), r, 20, 1.0)
        snore = shape(snore, formants([(p["f1"], 150, 8), (p["f2"], 300, 3)], floor=0.02))
        add_at(out, snore * np.hanning(inhale) * r.uniform(0.8, 1.2), int(t * SR))
        exhale = int(period * 0.4 * SR)
        breath = shape(r.standard_normal(exhale), band(500, 2000)) * np.hanning(exhale) * p["exhale"]
        add_at(out, breath, int((t + period * (p["frac"] + 0.1)) * SR))
        t += period
    return out


# name, in ESC-10 (a 10-class subset, like ESC-50's), source parameters, renderer; target = position
CLASSES = [
    ("dog_bark", True, dog_bark_src, dog_bark),
    ("rooster", True, rooster_src, rooster),
    ("bird_chirp", False, bird_chirp_src, bird_chirp),
    ("crickets", True, crickets_src, crickets),
    ("siren", False, siren_src, siren),
    ("whistle", False, whistle_src, whistle),
    ("church_bells", False, church_bells_src, church_bells),
    ("glass_clink", False, glass_clink_src, glass_clink),
    ("clock_tick", True, clock_tick_src, clock_tick),
    ("keyboard_typing", False, keyboard_typing_src, keyboard_typing),
    ("door_knock", False, door_knock_src, door_knock),
    ("footsteps", False, footsteps_src, footsteps),
    ("rain", True, rain_src, rain),
    ("wind", True, wind_src, wind),
    ("crackling_fire", True, crackling_fire_src, crackling_fire),
    ("water_drops", False, water_drops_src, water_drops),
    ("engine", True, engine_src, engine),
    ("helicopter", True, helicopter_src, helicopter),
    ("phone_ring", False, phone_ring_src, phone_ring),
    ("snoring", True, snoring_src, snoring),
]


def source_params(target: int, src_file: str, seed: int) -> dict:
    """The parameters a source recording's takes share: the class's, and a channel tilt."""
    r = np.random.default_rng(seed_of("source", seed, target, src_file))
    params = CLASSES[target][2](r)
    params["_tilt"] = r.uniform(-4, 4)  # dB per octave above/below 1 kHz (microphone, distance)
    params["_ambience"] = r.uniform(0.5, 2.0)  # colour exponent of the place's background
    return params


def make_clip(target: int, src_file: str, take: str, seed: int) -> np.ndarray:
    """One 5 s clip, 44.1 kHz float in [-1, 1]."""
    p = source_params(target, src_file, seed)
    r = np.random.default_rng(seed_of("take", seed, target, src_file, take))
    active = CLIP if r.random() >= SHORT_FRACTION else int(r.uniform(1.0, 4.0) * SR)
    delay = int(r.uniform(0.2, 1.5) * SR) if r.random() < 0.15 and active > 3 * SR else 0  # a late start
    event = np.zeros(active)
    event[delay:] = CLASSES[target][3](p, r, active - delay)
    event = event / (np.abs(event).max() + 1e-12)
    tilt = p["_tilt"]
    event = shape(event, lambda f: (np.maximum(f, 50.0) / 1000.0) ** (tilt / 6.02))
    event = event / (np.abs(event).max() + 1e-12)
    ambience = shape(colored(active, r, p["_ambience"]), band(40, 12000)) * 10 ** (r.uniform(-55, -32) / 20)
    x = event + ambience
    x *= raised_cos(active, int(0.003 * SR), int(0.005 * SR) if active < CLIP else 0)
    clip = np.zeros(CLIP)
    clip[:active] = x / (np.abs(x).max() + 1e-12) * 10 ** (r.uniform(-15, -0.5) / 20)
    return np.clip(clip, -1, 1)


def write_wav(path: Path, x: np.ndarray) -> None:
    """Write x as 16-bit PCM atomically (a temporary name, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, x, SR, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _work(job: tuple) -> str:
    target, src_file, take, seed, path = job
    if not Path(path).is_file():
        write_wav(Path(path), make_clip(target, src_file, take, seed))
    return path


# ---------------------------------------------------------------------------------------------- main


def partition(count: int, rng: np.random.Generator) -> list[int]:
    """Split count clips into sources of 3-5 takes (one source of count takes when count < 3)."""
    sizes = []
    while count > 0:
        options = [k for k in (3, 4, 5) if k == count or count - k >= 3] or [count]
        k = int(rng.choice(options))
        sizes.append(k)
        count -= k
    return sizes


def plan(clips_per_class: int, seed: int) -> list[dict]:
    """The metadata rows, sorted by file name: every class spread evenly over the folds, the remainder
    of clips_per_class / 5 going to different folds for different classes."""
    rng = np.random.default_rng(seed_of("plan", seed))
    rows, used = [], set()
    for target, (category, esc10, _, _) in enumerate(CLASSES):
        extra = {(target + i) % NUM_FOLDS for i in range(clips_per_class % NUM_FOLDS)}
        for fold in range(1, NUM_FOLDS + 1):
            count = clips_per_class // NUM_FOLDS + (fold - 1 in extra)
            for size in partition(count, rng):
                while (src := f"{int(rng.integers(100000, 1000000))}") in used:
                    pass
                used.add(src)
                for i in range(size):
                    take = chr(ord("A") + i)
                    rows.append(dict(filename=f"{fold}-{src}-{take}-{target}.wav", fold=fold, target=target,
                                     category=category, esc10=esc10, src_file=src, take=take))
    return sorted(rows, key=lambda row: row["filename"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--clips-per-class", type=int, default=40, help="clips of each class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nj", type=int, default=2, help="worker processes (default: %(default)s)")
    args = parser.parse_args()
    if args.clips_per_class < 1 or args.nj < 1:
        parser.error("--clips-per-class and --nj must be >= 1")

    out = args.out_dir
    meta = out / "meta" / "esc50.csv"
    if meta.exists():
        say(f"{meta} exists: corpus already made")
        return 0
    options = json.dumps({"clips_per_class": args.clips_per_class, "seed": args.seed,
                          "classes": [c[0] for c in CLASSES]}, sort_keys=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    if (out / OPTIONS).exists() and (out / OPTIONS).read_text() != options:
        say(f"{out} holds an unfinished corpus made with other options ({out / OPTIONS}); remove it or use those")
        return 1
    (out / OPTIONS).write_text(options)

    rows = plan(args.clips_per_class, args.seed)
    say(f"{len(rows)} clips of {len(CLASSES)} classes from {len({r['src_file'] for r in rows})} source recordings "
        f"in {NUM_FOLDS} folds")
    jobs = [(row["target"], row["src_file"], row["take"], args.seed, str(out / "audio" / row["filename"])) for row in rows]
    start, done = time.time(), 0
    if args.nj == 1:
        results, pool = map(_work, jobs), None
    else:
        pool = multiprocessing.Pool(args.nj)
        results = pool.imap_unordered(_work, jobs, chunksize=4)
    try:
        for _ in results:
            done += 1
            if done % 100 == 0 or done == len(jobs):
                say(f"{done}/{len(jobs)} clips ({time.time() - start:.0f} s)")
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    meta.parent.mkdir(exist_ok=True)
    tmp = meta.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, meta)
    say(f"wrote {len(rows)} clips of {len(CLASSES)} classes to {out} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
