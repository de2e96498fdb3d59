"""Features out of a model.pt: token embeddings, clip embeddings and discrete labels, as kaldiio ark/scp.

Works for any model.pt whose task has ``build_encoder`` (BEATs SSL or tokenizer, EAT, fine-tuned
classifiers: the encoder is an AbsEncoder) and, for labels, for ``beats_tokenizer`` model.pt files.

Per utterance of a feature dump (raw log-mel ``feats.scp``, normalised here as the model was trained):

* ``frames``: (N, D) token vectors of one layer, time-major (token n = time step n // F', frequency
  patch n % F', F' = 8 for 128 mel bins and 16 x 16 patches), CLS excluded;
* ``clip``: (D,) their mean, the fixed-size embedding of a variable-length clip;
* ``tokens``: (N,) int32 tokenizer labels, also as text (``tokens.txt``: ``<utt> <label> ...``).

Utterances are batched only with others of the same length, so nothing is ever padded and every
output is exactly what the model gives for that clip alone.
"""
from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import kaldiio
import numpy as np
import torch
from torch import nn

from audiossl.data.fbank import FeatureNorm, normalize

logger = logging.getLogger(__name__)

OUTPUTS = ("frames", "clip", "tokens")


def resolve_model_norm(obj: dict[str, Any], mean: float | None = None, std: float | None = None) -> FeatureNorm:
    """How a model.pt's features were normalised: explicit values, else the file's
    ``config.data.norm_mean/norm_std``, else ``stats.json`` of its ``config.data.train`` dump (a path
    relative to the recipe directory, the working directory of every stage)."""
    if mean is not None and std is not None:
        return FeatureNorm(mean=float(mean), std=float(std))
    data = (obj.get("config") or {}).get("data") or {}
    if data.get("norm_mean") is not None and data.get("norm_std") is not None:
        return FeatureNorm(mean=float(data["norm_mean"]), std=float(data["norm_std"]))
    train = data.get("train")
    if train and (Path(train) / "stats.json").is_file():
        from audiossl.data.dataset import resolve_norm

        return resolve_norm(train, None, None)
    raise ValueError(
        "cannot tell how this model normalised its features (no data.norm_mean/norm_std in its config and "
        f"no {train or '<data.train>'}/stats.json here): pass the mean and std, e.g. from the training dump's stats.json"
    )


@dataclass
class LoadedModel:
    """What :func:`load_for_extraction` found in a model.pt."""

    task: str
    norm: FeatureNorm
    encoder: nn.Module | None = None  # an AbsEncoder
    tokenizer: nn.Module | None = None  # has tokenize(feats, padding_mask)
    info: dict[str, Any] = field(default_factory=dict)


def load_for_extraction(
    model_path: str | os.PathLike, need_encoder: bool, need_tokenizer: bool,
    norm_mean: float | None = None, norm_std: float | None = None,
) -> LoadedModel:
    """Load the encoder and/or tokenizer of a model.pt (eval mode, CPU)."""
    from audiossl.models.beats.checkpoint import load_encoder
    from audiossl.train.checkpoint import load_model

    obj = load_model(model_path)
    task = obj["task"]
    out = LoadedModel(task=task, norm=resolve_model_norm(obj, norm_mean, norm_std))
    if need_tokenizer:
        if task != "beats_tokenizer":
            raise ValueError(f"{model_path}: labels come from a beats_tokenizer model.pt, this one is of task {task!r}")
        from audiossl.tasks.beats_tokenizer import load_tokenizer

        out.tokenizer = load_tokenizer(model_path)
    if need_encoder:
        out.encoder = load_encoder(model_path)
    return out


def same_length_batches(feats_scp: str | os.PathLike, batch_size: int) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Batches of (utt, (T, F) raw log-mel) of equal T, in feats.scp order of first appearance."""
    reader = kaldiio.load_scp(str(feats_scp))
    pending: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = defaultdict(list)
    for utt in reader:
        x = reader[utt]
        key = tuple(x.shape)
        pending[key].append((utt, x))
        if len(pending[key]) == batch_size:
            yield pending.pop(key)
    for batch in pending.values():
        yield batch


@torch.no_grad()
def extract(
    model: LoadedModel,
    feats_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    outputs: Sequence[str] = ("frames", "clip"),
    layer: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Write the requested outputs for every utterance of ``feats_dir/feats.scp`` into ``out_dir``.

    Args:
        outputs: any of "frames", "clip", "tokens".
        layer: encoder layer whose outputs to take, 1..L (negative counts from the end); None: last.

    Returns:
        A summary: number of utterances, output files, embedding dim.
    """
    for o in outputs:
        assert o in OUTPUTS, f"unknown output {o!r}; choose from {OUTPUTS}"
    feats_scp = Path(feats_dir) / "feats.scp"
    if not feats_scp.is_file():
        raise FileNotFoundError(f"{feats_scp}: no such file (a feature dump dir has feats.scp)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    want_embed = any(o in outputs for o in ("frames", "clip"))
    if want_embed:
        assert model.encoder is not None, "frames/clip need an encoder"
        model.encoder.to(device).eval()
    if "tokens" in outputs:
        assert model.tokenizer is not None, "tokens need a tokenizer"
        model.tokenizer.to(device).eval()

    writers = {}
    for o in outputs:
        writers[o] = kaldiio.WriteHelper(f"ark,scp:{out / (o + '.ark')},{out / (o + '.scp')}")
    token_text: dict[str, list[int]] = {}
    n_utts, dim = 0, None
    try:
        for batch in same_length_batches(feats_scp, batch_size):
            utts = [u for u, _ in batch]
            feats = normalize(torch.from_numpy(np.stack([x for _, x in batch])).float(), model.norm).to(device)  # (B, T, F)
            if want_embed:
                enc = model.encoder(feats, None, output_hidden_states=layer is not None)
                tokens = enc.tokens if layer is None else enc.hidden_states[layer_index(layer, len(enc.hidden_states))]
                dim = tokens.shape[-1]
                for i, utt in enumerate(utts):
                    if "frames" in writers:
                        writers["frames"](utt, tokens[i].float().cpu().numpy())
                    if "clip" in writers:
                        writers["clip"](utt, tokens[i].float().mean(0).cpu().numpy())
            if "tokens" in writers:
                labels = model.tokenizer.tokenize(feats, None)  # (B, N)
                for i, utt in enumerate(utts):
                    codes = labels[i].cpu().numpy().astype(np.int32)
                    writers["tokens"](utt, codes)
                    token_text[utt] = codes.tolist()
            n_utts += len(utts)
    finally:
        for w in writers.values():
            w.close()
    if token_text:
        with open(out / "tokens.txt", "w", encoding="utf-8") as f:
            for utt in sorted(token_text):
                f.write(utt + " " + " ".join(map(str, token_text[utt])) + "\n")
    # the scp files follow batch order; sort them like every Kaldi list (LC_ALL=C)
    for o in outputs:
        _sort_scp(out / f"{o}.scp")
    logger.info("extracted %s for %d utterances into %s", ", ".join(outputs), n_utts, out)
    return {"num_utts": n_utts, "dim": dim, "files": sorted(str(p) for p in out.iterdir())}


def layer_index(layer: int, num_layers: int) -> int:
    """A layer number of the command line (1..L from the input, -1..-L from the top) -> the index of
    its hidden states (0..L-1); a ValueError naming the range for any other."""
    idx = layer - 1 if layer > 0 else num_layers + layer
    if not 0 <= idx < num_layers:
        raise ValueError(f"layer {layer} does not exist: the encoder has layers 1..{num_layers} (or -1..-{num_layers})")
    return idx


def _sort_scp(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("".join(line + "\n" for line in sorted(lines, key=lambda l: l.split(maxsplit=1)[0].encode())), encoding="utf-8")


def read_token_text(path: str | os.PathLike) -> dict[str, list[int]]:
    """``tokens.txt`` -> {utt: labels}."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts:
                out[parts[0]] = [int(c) for c in parts[1:]]
    return out


def write_acoustic_words(tokens_txt: str | os.PathLike, out_dir: str | os.PathLike, vocab_size: int) -> dict[str, Any]:
    """Train a BPE model on ``tokens.txt`` and write ``bpe.model``, ``bpe.vocab`` and ``words.txt``
    (``<utt> <piece id> ...``); checks that every sequence decodes back to its labels."""
    from audiossl.models.beats.bpe import AcousticWords, train_bpe

    seqs = read_token_text(tokens_txt)
    out = Path(out_dir)
    model_path = train_bpe(seqs.values(), out / "bpe", vocab_size)
    aw = AcousticWords(model_path)
    n_labels = n_words = 0
    with open(out / "words.txt", "w", encoding="utf-8") as f:
        for utt in sorted(seqs):
            ids = aw.encode(seqs[utt])
            if aw.decode(ids) != seqs[utt]:
                raise RuntimeError(f"{utt}: BPE round trip failed (labels -> words -> labels changed the sequence)")
            n_labels += len(seqs[utt])
            n_words += len(ids)
            f.write(utt + " " + " ".join(map(str, ids)) + "\n")
    ratio = n_labels / max(n_words, 1)
    logger.info("acoustic words: %d labels -> %d words (%.2f labels per word)", n_labels, n_words, ratio)
    return {"bpe_model": str(model_path), "labels_per_word": ratio if math.isfinite(ratio) else 0.0}
