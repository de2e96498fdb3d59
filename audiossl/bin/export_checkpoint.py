"""Write one of our model.pt files in the released layout, so the official code can load it.

Usage:
    python -m audiossl.bin.export_checkpoint [--format auto|beats|eat] [--layout fairseq|hf]
        [--weight-norm-keys legacy|parametrizations] [--hf-code-repo REPO] <model.pt> <out>

e.g.:
    python -m audiossl.bin.export_checkpoint exp/beats_ssl_r3/model.pt BEATs_ours_iter3.pt
    python -m audiossl.bin.export_checkpoint --layout hf exp/finetune_eat/model.pt eat_ours_ft/

BEATs: a pre-trained (beats_ssl), self-distilled tokenizer (beats_tokenizer) or fine-tuned
(finetune over a BEATs encoder) model.pt becomes a {'cfg', 'model'[, 'label_dict']} file.
EAT: eat_pretrain or finetune over an EAT encoder becomes a fairseq file (<out> is a .pt file) or a
Hugging Face directory (<out>/config.json + model.safetensors) that loads as the released ones do,
``AutoModel.from_pretrained(<out>, trust_remote_code=True)``: its config.json names the model code of
a released repository (--hf-code-repo), which transformers fetches from there.
"""
from __future__ import annotations

import argparse
import logging
import sys
from audiossl.bin.common import setup_logging

logger = logging.getLogger("audiossl.bin.export_checkpoint")

BEATS_TASKS = ("beats_ssl", "beats_tokenizer")
EAT_TASKS = ("eat_pretrain",)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.export_checkpoint",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("model", help="our model.pt")
    parser.add_argument("out", help="the file (or, for EAT --layout hf, directory) to write")
    parser.add_argument("--format", choices=("auto", "beats", "eat"), default="auto",
                        help="model family [auto: from the model.pt task]")
    parser.add_argument("--layout", choices=("fairseq", "hf"), default="fairseq", help="EAT only [fairseq]")
    parser.add_argument("--weight-norm-keys", choices=("legacy", "parametrizations"), default="legacy",
                        help="BEATs only: weight_g/weight_v as released, or torch's parametrizations names [legacy]")
    parser.add_argument("--hf-code-repo", default=None,
                        help="EAT --layout hf only: the Hugging Face repository whose model code config.json's "
                             "auto_map names [the released base model of the same variant]")
    return parser


def model_family(model_pt: dict) -> str:
    """'beats' or 'eat' from a model.pt's task (and, for finetune, its encoder task)."""
    task = model_pt["task"]
    if task == "finetune":
        task = ((model_pt.get("config") or {}).get("model") or {}).get("encoder_task") or ""
    if task in BEATS_TASKS:
        return "beats"
    if task in EAT_TASKS:
        return "eat"
    raise ValueError(f"a model.pt of task {model_pt['task']!r} (encoder {task!r}) has no released layout")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    from audiossl.models.checkpoint import atomic_save, load_model

    try:
        model_pt = load_model(args.model)
        fmt = model_family(model_pt) if args.format == "auto" else args.format
        if fmt == "beats":
            from audiossl.models.beats.checkpoint import export_official

            atomic_save(export_official(model_pt, weight_norm_keys=args.weight_norm_keys), args.out)
        else:
            from audiossl.models.eat.checkpoint import export_official, save_official

            save_official(export_official(model_pt, layout=args.layout, hf_code_repo=args.hf_code_repo), args.out)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"export_checkpoint: {e}", file=sys.stderr)
        return 1
    logger.info("wrote %s (%s layout) from %s", args.out, fmt, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
