#!/usr/bin/env python3
"""Synthesise spoken words with espeak-ng, in the layout of Speech Commands V2 (v0.02).

Usage: local/make_espeak_corpus.py [--language en] [--words w1,w2,...] [--speakers 120] [--takes 1] [--seed 1] [--nj 2] <out-dir>
e.g.:  local/make_espeak_corpus.py downloads/spc_espeak
       local/make_espeak_corpus.py --language de --speakers 100 downloads/spc_espeak_de

Writes <out-dir>/<word>/<speaker>_nohash_<take>.wav (1.0 s, 16 kHz mono, 16-bit), validation_list.txt
and testing_list.txt (paths <word>/<file>.wav, sorted) and _background_noise_/ (six 30 s synthetic
noise recordings), as the v0.02 tarball has them, so audiossl.bin.prepare_spc2 reads it unchanged.

--language picks the voices and the default words: en (the 35 words of SPC-2, English dialects) or
de (35 German words: another vocabulary, other phonemes, one dialect; the corpus that no CPU config
was tuned on). A speaker is an espeak-ng voice drawn once: a dialect of the language (for en those
of en, en-us, en-gb-scotland, en-gb-x-gbclan, en-gb-x-rp, en-gb-x-gbcwmd, en-029 that
`espeak-ng --voices` lists) with a variant
(`espeak-ng --voices=variant`), a pitch, a speed and a vocal-tract warp; its id is 8 hex digits
(like bb05582b). It says every word --takes times, each take with a little speed and pitch jitter.
Each clip is trimmed, put at a random offset in 1 s, given a random gain, a random channel filter and
background noise (white, pink, brown, hum or babble) at a random SNR. Speakers go to train, valid or
test by the hash of their id, as the official hash-mod-100 rule does (about 80/10/10), with every
split given at least one speaker. Deterministic for a given seed and espeak-ng version (each clip is
seeded from the seed, speaker, word and take, so --nj does not change a byte); a finished corpus
(.done present) is left as it is, and an interrupted one is resumed.
"""
import argparse
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

PROG = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "make_espeak_corpus.py"
SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # 1.0 s
NOISE_SECONDS = 30
WORDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house learn left marvin nine no "
    "off on one right seven sheila six stop three tree two up visual wow yes zero"
).split()
WORDS_DE = (
    "null eins zwei drei vier sechs sieben acht neun zehn elf ja nein oben unten links rechts an aus halt "
    "los vogel hund katze haus baum bett lernen folgen sonne wasser feuer morgen abend danke"
).split()
LANGUAGES = {  # --language: (espeak-ng dialects, default words)
    "en": (("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029"), WORDS),
    "de": (("de",), WORDS_DE),
}
EXCLUDED_VARIANTS = {"fast"}  # fast_test: a speed preset, not a voice
VALID_PERCENT, TEST_PERCENT = 10, 10
DONE, OPTIONS = ".done", ".options"
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")
BACKGROUND = {  # _background_noise_/<name>.wav: generator, seed offset
    "white_noise": "white",
    "pink_noise": "pink",
    "brown_noise": "brown",
    "hum": "hum",
    "babble": "babble",
    "running_tap": "tap",
}


def say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def seed_of(*parts) -> int:
    """A 64-bit seed from any parts: the same parts give the same seed in every process."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


# ---------------------------------------------------------------------------------------------- voices


def _columns(listing: str) -> list[tuple[str, str, str]]:
    """(language, file, other languages) of each row of `espeak-ng --voices` (fixed-width columns)."""
    lines = listing.splitlines()
    if not lines or "File" not in lines[0]:
        return []
    header = lines[0]
    lang_col, file_col = header.index("Language"), header.index("File")
    other_col = header.index("Other Languages") if "Other Languages" in header else len(header)
    age_col = header.index("Age/Gender") if "Age/Gender" in header else file_col
    return [
        (line[lang_col:age_col].strip(), line[file_col:other_col].strip(), line[other_col:].strip())
        for line in lines[1:]
        if line.strip()
    ]


def available_voices(wanted: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The dialects of `wanted` that espeak-ng lists, and its variants (sorted)."""
    listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=True).stdout
    languages = set()
    for language, _, other in _columns(listing):
        languages.add(language)
        languages.update(re.findall(r"\(([^\s()]+) \d+\)", other))
    dialects = [d for d in wanted if d in languages]
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    variants = sorted(
        {
            file[len("!v/"):]
            for _, file, _ in _columns(listing)
            if file.startswith("!v/") and " " not in file[len("!v/"):] and file[len("!v/"):] not in EXCLUDED_VARIANTS
        }
    )
    return dialects, variants


def make_speakers(num: int, seed: int, dialects: list[str], variants: list[str]) -> list[dict]:
    """num speakers, each drawn once: voice, pitch, speed, vocal-tract warp; ids unique 8-hex-digit hashes."""
    rng = np.random.default_rng(seed_of("speakers", seed))
    speakers, ids = [], set()
    index = 0
    while len(speakers) < num:
        voice = f"{dialects[rng.integers(len(dialects))]}+{variants[rng.integers(len(variants))]}" if variants else (
            dialects[rng.integers(len(dialects))]
        )
        spk = {
            "voice": voice,
            "pitch": int(rng.integers(20, 81)),
            "speed": int(rng.integers(120, 221)),
            "amplitude": int(rng.integers(70, 111)),  # loudness into espeak-ng; above ~120 it clips
            "warp": float(rng.uniform(0.88, 1.12)),  # resampling factor: shifts formants and pitch together
        }
        spk["id"] = hashlib.sha1(f"espeak/{seed}/{index}/{json.dumps(spk, sort_keys=True)}".encode()).hexdigest()[:8]
        index += 1
        if spk["id"] in ids:
            continue
        ids.add(spk["id"])
        speakers.append(spk)
    return speakers


def _hash_percent(speaker_id: str) -> float:
    """The official rule's number: sha1 of the speaker id mod 2**27 - 1, as a percentage."""
    max_per_class = 2**27 - 1
    return (int(hashlib.sha1(speaker_id.encode()).hexdigest(), 16) % (max_per_class + 1)) * (100.0 / max_per_class)


def assign_splits(speaker_ids: list[str]) -> dict[str, str]:
    """Speaker id -> train/valid/test by the hash rule, then a speaker moved into any empty split
    (the one of the largest split whose hash lies nearest the empty split's range)."""
    if len(speaker_ids) < 3:
        raise ValueError("need at least 3 speakers: one each for train, valid and test")
    ranges = {"valid": (0.0, VALID_PERCENT), "test": (VALID_PERCENT, VALID_PERCENT + TEST_PERCENT),
              "train": (VALID_PERCENT + TEST_PERCENT, 100.0)}
    percent = {s: _hash_percent(s) for s in speaker_ids}
    split = {s: next(name for name, (lo, hi) in ranges.items() if p < hi or name == "train") for s, p in percent.items()}
    for name in ("valid", "test", "train"):
        if name in split.values():
            continue
        sizes = {n: sum(1 for v in split.values() if v == n) for n in ranges}
        donor = max((n for n in ranges if sizes[n] > 1), key=lambda n: (sizes[n], n))
        lo, hi = ranges[name]
        pick = min((s for s in speaker_ids if split[s] == donor),
                   key=lambda s: (max(lo - percent[s], percent[s] - hi, 0.0), s))
        split[pick] = name
    return split


# ---------------------------------------------------------------------------------------------- signals


def fft_resample(x: np.ndarray, sr_in: float, sr_out: int) -> np.ndarray:
    """Band-limited resampling by zero-padding or truncating the spectrum (x starts and ends near 0)."""
    m = max(1, int(round(len(x) * sr_out / sr_in)))
    spec = np.fft.rfft(x)
    out = np.zeros(m // 2 + 1, dtype=complex)
    k = min(len(spec), len(out))
    out[:k] = spec[:k]
    return np.fft.irfft(out, n=m) * (m / len(x))


def _shape(x: np.ndarray, gain) -> np.ndarray:
    """x filtered by the magnitude/complex response gain(f) (Hz), zero-padded so it does not wrap."""
    n = len(x)
    nfft = 1 << int(math.ceil(math.log2(n + 2048)))
    f = np.fft.rfftfreq(nfft, 1 / SAMPLE_RATE)
    return np.fft.irfft(np.fft.rfft(x, nfft) * gain(f), nfft)[:n]


def colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec *= 1 / np.maximum(f, 20.0) ** (exponent / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz (a little off) and its harmonics with random levels, a little noise."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = (50.0 if rng.random() < 0.5 else 60.0) * rng.uniform(0.99, 1.01)
    x = sum(rng.uniform(0.05, 1.0) / k * np.sin(2 * math.pi * k * f0 * t + rng.uniform(0, 2 * math.pi))
            for k in range(1, int(rng.integers(4, 12))))
    x = x + 0.05 * colored_noise(n, rng, 1.0)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Babble-like: many gliding tones (100-3000 Hz) under syllable-rate (2-7 Hz) envelopes, some noise."""
    t = np.arange(n) / SAMPLE_RATE
    x = np.zeros(n)
    for _ in range(int(rng.integers(12, 30))):
        f = rng.uniform(100, 3000) * (1 + 0.1 * np.sin(2 * math.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6.3)))
        tone = np.sin(2 * math.pi * np.cumsum(f) / SAMPLE_RATE)
        env = np.maximum(0.0, np.sin(2 * math.pi * rng.uniform(2, 7) * t + rng.uniform(0, 2 * math.pi))) ** 2
        x += tone * env * rng.uniform(0.2, 1.0)
    x += 0.1 * colored_noise(n, rng, 1.0)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def running_tap(n: int, rng: np.random.Generator) -> np.ndarray:
    """Running water: band-passed noise whose band and level drift, with bubbly resonances."""
    x = colored_noise(n, rng, 0.5)
    lo, hi = rng.uniform(300, 800), rng.uniform(3000, 7000)
    x = _shape(x, lambda f: 1 / np.sqrt(1 + (lo / np.maximum(f, 1)) ** 4) / np.sqrt(1 + (f / hi) ** 4))
    slow = _shape(rng.standard_normal(n), lambda f: (f < 3.0).astype(float))
    x *= 1 + 0.5 * slow / (np.abs(slow).max() + 1e-12)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def make_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "white":
        return colored_noise(n, rng, 0.0)
    if kind == "pink":
        return colored_noise(n, rng, 1.0)
    if kind == "brown":
        return colored_noise(n, rng, 2.0)
    if kind == "hum":
        return hum(n, rng)
    if kind == "babble":
        return babble(n, rng)
    if kind == "tap":
        return running_tap(n, rng)
    raise ValueError(f"unknown noise kind {kind!r}")


def channel(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random microphone/room channel: none, a first-order low or high shelf, a telephone-like band, a resonance."""
    kind = rng.choice(["none", "low_shelf", "high_shelf", "band", "resonance"], p=[0.15, 0.25, 0.25, 0.2, 0.15])
    if kind == "none":
        return x
    if kind in ("low_shelf", "high_shelf"):
        g = 10 ** (rng.uniform(-15, 15) / 20)
        fc = rng.uniform(200, 2000) if kind == "low_shelf" else rng.uniform(1000, 5000)
        if kind == "low_shelf":  # gain g below fc, 1 above
            return _shape(x, lambda f: (1j * f + g * fc) / (1j * f + fc))
        return _shape(x, lambda f: (g * 1j * f + fc) / (1j * f + fc))  # 1 below fc, gain g above
    if kind == "band":
        f1, f2 = rng.uniform(150, 500), rng.uniform(2500, 4500)
        return _shape(x, lambda f: (1j * f / (1j * f + f1)) * (f2 / (1j * f + f2)))
    fr, q, g = rng.uniform(400, 4000), rng.uniform(1, 5), 10 ** (rng.uniform(3, 12) / 20)
    return _shape(x, lambda f: 1 + (g - 1) / (1 + 1j * q * (f / fr - fr / np.maximum(f, 1))))


def read_espeak_wav(data: bytes) -> tuple[np.ndarray, int]:
    """espeak-ng's --stdout wav (its sizes are placeholders): samples in [-1, 1] and the rate."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a wav")
    pos, rate, body = 12, None, None
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag == b"fmt ":
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
        if tag == b"data":
            body = data[pos + 8:]
            break
        pos += 8 + size + (size & 1)
    if rate is None or body is None:
        raise ValueError("espeak-ng wav without fmt or data chunk")
    body = body[: len(body) // 2 * 2]
    return np.frombuffer(body, dtype="<i2").astype(np.float64) / 32768.0, rate


def synthesise(word: str, voice: str, pitch: int, speed: int, amplitude: int) -> tuple[np.ndarray, int]:
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-a", str(amplitude), "-z", "--stdout", word]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0 or len(res.stdout) < 100:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.decode(errors='replace').strip()}")
    return read_espeak_wav(res.stdout)


def trim(x: np.ndarray, rel_db: float = -40.0, margin: int = 320) -> np.ndarray:
    """Drop leading and trailing 10 ms frames quieter than rel_db below the loudest one (keep a margin)."""
    frame = SAMPLE_RATE // 100
    nfr = len(x) // frame
    if nfr == 0:
        return x
    rms = np.sqrt(np.mean(x[: nfr * frame].reshape(nfr, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (rel_db / 20))
    if len(loud) == 0:
        return x
    return x[max(0, loud[0] * frame - margin): min(len(x), (loud[-1] + 1) * frame + margin)]


def make_clip(word: str, spk: dict, take: int, seed: int) -> np.ndarray:
    """One 1 s clip of spk saying word: 16 kHz float in [-1, 1]."""
    rng = np.random.default_rng(seed_of("clip", seed, spk["id"], word, take))
    pitch = int(np.clip(spk["pitch"] + rng.integers(-6, 7), 0, 99))
    speed = int(np.clip(spk["speed"] * rng.uniform(0.92, 1.08), 80, 450))
    x, rate = synthesise(word, spk["voice"], pitch, speed, spk["amplitude"])
    x = fft_resample(x, rate * spk["warp"] * rng.uniform(0.98, 1.02), SAMPLE_RATE)
    x = trim(x)
    if len(x) > CLIP_SAMPLES:
        start = int(rng.integers(0, len(x) - CLIP_SAMPLES + 1))
        x = x[start:start + CLIP_SAMPLES]
    clip = np.zeros(CLIP_SAMPLES)
    offset = int(rng.integers(0, CLIP_SAMPLES - len(x) + 1))
    clip[offset:offset + len(x)] = x
    clip = channel(clip, rng)
    speech_power = np.mean(clip[offset:offset + len(x)] ** 2) + 1e-12
    kind = NOISE_KINDS[rng.integers(len(NOISE_KINDS))]
    snr_db = rng.uniform(5, 30)
    noise = make_noise(kind, CLIP_SAMPLES, np.random.default_rng(seed_of("noise", seed, spk["id"], word, take)))
    clip = clip + noise * math.sqrt(speech_power / 10 ** (snr_db / 10))
    peak = np.abs(clip).max() + 1e-12
    return np.clip(clip / peak * 0.99 * 10 ** (rng.uniform(-20, 0) / 20), -1, 1)


def write_wav(path: Path, x: np.ndarray) -> None:
    """Write x as 16-bit PCM atomically (a temporary name, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _work(job: tuple) -> str:
    """Make one clip unless it exists; "" when done, else the error."""
    word, spk, take, seed, path = job
    if not Path(path).is_file():
        try:
            write_wav(Path(path), make_clip(word, spk, take, seed))
        except (RuntimeError, ValueError, OSError) as err:
            return f"{path}: {err}"
    return ""


# ---------------------------------------------------------------------------------------------- main


def parse_words(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in words if not re.fullmatch(r"[a-z][a-z']*", w)]
    if not words or bad or len(set(words)) != len(words):
        raise argparse.ArgumentTypeError(f"expected distinct lower-case words separated by commas, got {text!r}")
    return words


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--language", choices=sorted(LANGUAGES), default="en",
                        help="voices and default words (default: %(default)s)")
    parser.add_argument("--words", type=parse_words, default=None,
                        help="words, comma-separated (default: the language's 35: SPC-2's for en)")
    parser.add_argument("--speakers", type=int, default=120, help="number of speakers, at least 3 (default: %(default)s)")
    parser.add_argument("--takes", type=int, default=1, help="times each speaker says each word (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nj", type=int, default=2, help="worker processes (default: %(default)s)")
    args = parser.parse_args()
    if args.speakers < 3 or args.takes < 1 or args.nj < 1:
        parser.error("--speakers must be >= 3, --takes and --nj >= 1")

    out = args.out_dir
    if (out / DONE).exists():
        say(f"{out / DONE} exists: corpus already made")
        return 0
    if shutil.which("espeak-ng") is None:
        say("espeak-ng not found on PATH; install it (apt-get install espeak-ng)")
        return 1
    wanted, default_words = LANGUAGES[args.language]
    if args.words is None:
        args.words = list(default_words)
    dialects, variants = available_voices(wanted)
    if not dialects:
        say(f"espeak-ng lists none of the dialects {' '.join(wanted)} of --language {args.language}")
        return 1
    options = json.dumps({"words": args.words, "speakers": args.speakers, "takes": args.takes, "seed": args.seed,
                          "dialects": dialects, "variants": variants}, sort_keys=True)
    out.mkdir(parents=True, exist_ok=True)
    if (out / OPTIONS).exists() and (out / OPTIONS).read_text() != options:
        say(f"{out} holds an unfinished corpus made with other options ({out / OPTIONS}); remove it or use those")
        return 1
    (out / OPTIONS).write_text(options)

    speakers = make_speakers(args.speakers, args.seed, dialects, variants)
    split = assign_splits([s["id"] for s in speakers])
    say(f"{len(speakers)} speakers ({sum(v == 'train' for v in split.values())} train, "
        f"{sum(v == 'valid' for v in split.values())} valid, {sum(v == 'test' for v in split.values())} test) "
        f"from {len(dialects)} dialects x {len(variants)} variants, {len(args.words)} words, {args.takes} take(s)")

    start = time.time()
    noise_dir = out / "_background_noise_"
    noise_dir.mkdir(exist_ok=True)
    for name, kind in BACKGROUND.items():
        path = noise_dir / f"{name}.wav"
        if not path.is_file():
            x = make_noise(kind, NOISE_SECONDS * SAMPLE_RATE, np.random.default_rng(seed_of("background", args.seed, name)))
            write_wav(path, np.clip(x / (np.abs(x).max() + 1e-12) * 0.5, -1, 1))

    jobs, lists = [], {"valid": [], "test": []}
    for word in args.words:
        (out / word).mkdir(exist_ok=True)
        for spk in speakers:
            for take in range(args.takes):
                rel = f"{word}/{spk['id']}_nohash_{take}.wav"
                jobs.append((word, spk, take, args.seed, str(out / rel)))
                if split[spk["id"]] in lists:
                    lists[split[spk["id"]]].append(rel)
    done, errors = 0, []
    if args.nj == 1:
        results = map(_work, jobs)
        pool = None
    else:
        pool = multiprocessing.Pool(args.nj)
        results = pool.imap_unordered(_work, jobs, chunksize=8)
    try:
        for error in results:
            done += 1
            if error:
                errors.append(error)
                say(error)
            if done % 500 == 0 or done == len(jobs):
                say(f"{done}/{len(jobs)} clips ({time.time() - start:.0f} s)")
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    if errors:
        say(f"{len(errors)} of {len(jobs)} clips failed; {out} is left unfinished (re-run to retry them)")
        return 1
    for name, split_name in (("validation_list.txt", "valid"), ("testing_list.txt", "test")):
        (out / name).write_text("".join(f"{rel}\n" for rel in sorted(lists[split_name])))
    (out / DONE).write_text(options)
    say(f"wrote {len(jobs)} clips of {len(args.words)} words and {len(BACKGROUND)} background noises to {out} "
        f"in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
