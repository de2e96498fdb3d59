"""Extract token embeddings, clip embeddings, tokenizer labels or class logits with a model.pt, from a
feature dump or from audio.

Usage:
    python -m audiossl.bin.extract --model exp/<tag>/model.pt --feats dump/fbank_<kind>/<set> \\
        --output-dir exp/<tag>/extract/<set> [--outputs frames,clip] [--layer L] [--bpe-vocab N]
    python -m audiossl.bin.extract --model exp/<tag>/model.pt --audio <wav.scp | dir | list> \\
        --output-dir out [--outputs frames,clip,logits]

e.g.:
    python -m audiossl.bin.extract --model exp/beats_ssl_r2/model.pt --feats dump/fbank_beats/eval \\
        --output-dir exp/beats_ssl_r2/extract/eval --outputs clip --layer 9
    python -m audiossl.bin.extract --model exp/beats_tok_r2/model.pt --feats dump/fbank_beats/train \\
        --output-dir exp/beats_tok_r2/tokens/train --outputs tokens --bpe-vocab 4000

Writes <output-dir>/{frames,clip,tokens,logits}.{ark,scp} (kaldiio: frames (N, D) float32 token
vectors in time-major token order, clip (D,) their mean, tokens (N,) int32 labels, logits (C,) float32
of a fine-tuned model, averaged over its scoring windows), tokens.txt, and with --bpe-vocab:
bpe.model, bpe.vocab and words.txt ("acoustic words": BPE piece ids per utterance).
--audio takes a wav.scp (a file named *.scp: "<utt> <path or command |>"), a directory (every audio
file under it; utterance ids are the paths below it without the suffix, "/" -> "-"), or a text file
of audio paths, one per line (ids: the file names without the suffix); the fbank is the model's own
front end. Features are normalised as the model was trained (its config's data.norm_mean/norm_std,
else the stats.json of its data.train dump, else --norm-mean/--norm-std). Run from the recipe
directory.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from audiossl.score.extract import OUTPUTS, extract, load_for_extraction, write_acoustic_words
from audiossl.bin.common import setup_logging

logger = logging.getLogger("audiossl.bin.extract")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Extract embeddings or tokenizer labels from a feature dump with a model.pt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model.pt (any task with an encoder; beats_tokenizer for tokens)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--feats", help="feature dump dir with feats.scp (raw log-mel)")
    source.add_argument("--audio", help="a wav.scp (*.scp), a directory of audio files, or a list of audio paths")
    parser.add_argument("--output-dir", required=True, help="where the ark/scp files go")
    parser.add_argument("--outputs", default="frames,clip",
                        help=f"comma-separated subset of {','.join(OUTPUTS)} (logits: a fine-tuned model.pt)")
    parser.add_argument("--layer", type=int, default=None, help="encoder layer 1..L (negative: from the end); default: last")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per forward pass (equal lengths only)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--norm-mean", type=float, default=None, help="feature mean, if the model.pt does not say")
    parser.add_argument("--norm-std", type=float, default=None, help="feature std, if the model.pt does not say")
    parser.add_argument("--bpe-vocab", type=int, default=0, help="> 0: train a BPE model of this size over the labels")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    outputs = [o for o in args.outputs.split(",") if o]
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad or not outputs:
        print(f"{sys.argv[0]}: --outputs: unknown {bad} (choose from {','.join(OUTPUTS)})", file=sys.stderr)
        return 2
    if args.bpe_vocab and "tokens" not in outputs:
        outputs.append("tokens")
    logger.info("%s", " ".join(sys.argv))
    try:
        audio = read_audio_list(args.audio) if args.audio else None
    except ValueError as e:
        print(f"{sys.argv[0]}: --audio: {e}", file=sys.stderr)
        return 2
    model = load_for_extraction(
        args.model,
        need_encoder=any(o in outputs for o in ("frames", "clip")),
        need_tokenizer="tokens" in outputs,
        norm_mean=args.norm_mean,
        norm_std=args.norm_std,
        need_classifier="logits" in outputs,
    )
    summary = extract(model, args.feats, args.output_dir, outputs, args.layer, args.batch_size, args.device, audio=audio)
    logger.info("%d utterances -> %s", summary["num_utts"], args.output_dir)
    if args.bpe_vocab:
        bpe = write_acoustic_words(f"{args.output_dir}/tokens.txt", args.output_dir, args.bpe_vocab)
        logger.info("acoustic words: %s, %.2f labels per word", bpe["bpe_model"], bpe["labels_per_word"])
    return 0


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")


def read_audio_list(arg: str) -> dict[str, str]:
    """``utt -> wav.scp value`` from a wav.scp, a directory or a list of paths (see the module
    docstring); a ValueError names the file, line or the two files that give one id twice."""
    from audiossl.data.datadir import DataDirError, read_kv

    path = Path(arg)
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no audio file ({', '.join(AUDIO_SUFFIXES)}) under this directory")
        pairs = [("-".join(f.relative_to(path).with_suffix("").parts), str(f)) for f in files]
    elif not path.is_file():
        raise ValueError(f"{path}: no such file or directory")
    elif path.suffix == ".scp":
        try:
            return read_kv(path, check_sorted=False)
        except DataDirError as e:
            raise ValueError(str(e)) from None
    else:
        pairs = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                pairs.append((Path(line).stem, line))
        if not pairs:
            raise ValueError(f"{path}: no audio path in this list")
    out: dict[str, str] = {}
    for utt, spec in pairs:
        utt = "_".join(utt.split())  # Kaldi ids have no whitespace
        if utt in out:
            raise ValueError(f"{out[utt]} and {spec} both give the utterance id {utt!r}; use a wav.scp to name them")
        out[utt] = spec
    return out


if __name__ == "__main__":
    sys.exit(main())
