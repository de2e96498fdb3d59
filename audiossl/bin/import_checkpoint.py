"""Convert a released BEATs or EAT checkpoint into an experiment dir our stages read.

Usage:
    python -m audiossl.bin.import_checkpoint [--format auto|beats|eat] [--kind auto|pretrained|finetuned|tokenizer]
        [--layout auto|fairseq|hf] [--use-teacher true|false] <official-checkpoint> <exp-dir>

e.g.:
    # BEATs (microsoft/unilm): pre-trained, fine-tuned (with label_dict) or Tokenizers files
    python -m audiossl.bin.import_checkpoint BEATs_iter3_plus_AS2M.pt exp/beats_iter3_plus
    # EAT (fairseq files): pre-trained, optionally with the EMA teacher as the encoder
    python -m audiossl.bin.import_checkpoint --use-teacher true EAT-base_epoch10_pt.pt exp/eat_base_teacher
    # EAT, Hugging Face layout: a directory with config.json and model.safetensors
    python -m audiossl.bin.import_checkpoint --format eat --layout hf EAT-base_epoch30_ft/ exp/eat_ft

Writes <exp-dir>/model.pt (the file every later stage reads: fine-tune with
--pretrained <exp-dir>/model.pt, score a fine-tuned import directly with audiossl.bin.score) and
<exp-dir>/config.yaml. Keys are checked strictly: a mismatch lists the missing, unexpected and
mis-shaped keys. The reverse direction is audiossl.bin.export_checkpoint.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from audiossl.bin.common import str2bool, setup_logging

logger = logging.getLogger("audiossl.bin.import_checkpoint")



def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.import_checkpoint",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("checkpoint", help="the released file (or, for EAT's HF layout, directory)")
    parser.add_argument("exp_dir", type=Path, help="experiment dir to write model.pt and config.yaml into")
    parser.add_argument("--format", choices=("auto", "beats", "eat"), default="auto",
                        help="which model family [auto: from the keys]")
    parser.add_argument("--kind", choices=("auto", "pretrained", "finetuned", "tokenizer"), default="auto",
                        help="BEATs only: what the file holds [auto: from the keys]")
    parser.add_argument("--layout", choices=("auto", "fairseq", "hf"), default="auto",
                        help="EAT only: fairseq or Hugging Face layout [auto: from the keys]")
    parser.add_argument("--use-teacher", type=str2bool, default=False,
                        help="EAT pre-trained only: the EMA teacher becomes the encoder [false]")
    return parser


def detect_format(path: str) -> str:
    """'beats' or 'eat' from the file's keys (an HF directory or safetensors file is EAT)."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".safetensors":
        return "eat"
    from audiossl.models.eat.checkpoint import read_official

    _, state, _, _ = read_official(p)
    if "patch_embedding.weight" in state:
        return "beats"
    if any(k.startswith(("modality_encoders.", "model.modality_encoders.", "model.blocks.", "blocks.")) for k in state):
        return "eat"
    raise ValueError(f"{path}: neither a BEATs nor an EAT checkpoint; first keys: {sorted(state)[:8]}")


def import_any(path: str, fmt: str, kind: str, layout: str, use_teacher: bool):
    """A released checkpoint as an ``ImportedModel`` (audiossl.models.checkpoint)."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "beats":
        from audiossl.models.beats.checkpoint import import_official

        return import_official(path, kind=kind)
    from audiossl.models.eat.checkpoint import import_official

    return import_official(path, layout=layout, use_teacher=use_teacher)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    import yaml

    try:
        imported = import_any(args.checkpoint, args.format, args.kind, args.layout, args.use_teacher)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"import_checkpoint: {e}", file=sys.stderr)
        return 1
    args.exp_dir.mkdir(parents=True, exist_ok=True)
    imported.extra = dict(imported.extra, imported_from=str(args.checkpoint))
    imported.save(args.exp_dir / "model.pt")
    (args.exp_dir / "config.yaml").write_text(yaml.safe_dump(imported.config(), sort_keys=False))
    logger.info("wrote %s/model.pt: task %s, %d tensors, from %s",
                args.exp_dir, imported.task, len(imported.state_dict), args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
