"""Extract token embeddings, clip embeddings or tokenizer labels from a feature dump with a model.pt.

Usage:
    python -m audiossl.bin.extract --model exp/<tag>/model.pt --feats dump/fbank_<kind>/<set> \\
        --output-dir exp/<tag>/extract/<set> [--outputs frames,clip] [--layer L] [--bpe-vocab N]

e.g.:
    python -m audiossl.bin.extract --model exp/beats_ssl_r2/model.pt --feats dump/fbank_beats/eval \\
        --output-dir exp/beats_ssl_r2/extract/eval --outputs clip --layer 9
    python -m audiossl.bin.extract --model exp/beats_tok_r2/model.pt --feats dump/fbank_beats/train \\
        --output-dir exp/beats_tok_r2/tokens/train --outputs tokens --bpe-vocab 4000

Writes <output-dir>/{frames,clip,tokens}.{ark,scp} (kaldiio: frames (N, D) float32 token vectors in
time-major token order, clip (D,) their mean, tokens (N,) int32 labels), tokens.txt, and with
--bpe-vocab: bpe.model, bpe.vocab and words.txt ("acoustic words": BPE piece ids per utterance).
Features are normalised as the model was trained (its config's data.norm_mean/norm_std, else the
stats.json of its data.train dump, else --norm-mean/--norm-std). Run from the recipe directory.
"""
from __future__ import annotations

import argparse
import logging
import sys

from audiossl.models.beats.extract import OUTPUTS, extract, load_for_extraction, write_acoustic_words
from audiossl.bin.common import setup_logging

logger = logging.getLogger("audiossl.bin.extract")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Extract embeddings or tokenizer labels from a feature dump with a model.pt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model.pt (any task with an encoder; beats_tokenizer for tokens)")
    parser.add_argument("--feats", required=True, help="feature dump dir with feats.scp (raw log-mel)")
    parser.add_argument("--output-dir", required=True, help="where the ark/scp files go")
    parser.add_argument("--outputs", default="frames,clip", help=f"comma-separated subset of {','.join(OUTPUTS)}")
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
    model = load_for_extraction(
        args.model,
        need_encoder=any(o in outputs for o in ("frames", "clip")),
        need_tokenizer="tokens" in outputs,
        norm_mean=args.norm_mean,
        norm_std=args.norm_std,
    )
    summary = extract(model, args.feats, args.output_dir, outputs, args.layer, args.batch_size, args.device)
    logger.info("%d utterances -> %s", summary["num_utts"], args.output_dir)
    if args.bpe_vocab:
        bpe = write_acoustic_words(f"{args.output_dir}/tokens.txt", args.output_dir, args.bpe_vocab)
        logger.info("acoustic words: %s, %.2f labels per word", bpe["bpe_model"], bpe["labels_per_word"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
