"""Features out of a model.pt: token embeddings, clip embeddings and discrete labels, as kaldiio ark/scp.

Works for any model.pt whose task has ``build_encoder`` (BEATs SSL or tokenizer, EAT, fine-tuned
classifiers: the encoder is an AbsEncoder) and, for labels, for ``beats_tokenizer`` model.pt files.

Per utterance of a feature dump (raw log-mel ``feats.scp``), or of audio files whose fbank is
computed here with the model's own front end (:func:`audio_features`), normalised as the model was
trained:

* ``frames``: (N, D) token vectors of one layer, time-major (token n = time step n // F', frequency
  patch n % F', F' = 8 for 128 mel bins and 16 x 16 patches), CLS excluded;
* ``clip``: (D,) their mean, the fixed-size embedding of a variable-length clip;
* ``tokens``: (N,) int32 tokenizer labels, also as text (``tokens.txt``: ``<utt> <label> ...``);
* ``logits``: (C,) float32 logits of a fine-tuned classifier, in the windows of its training length
  as scoring takes them (``audiossl.score.inference``), averaged over the windows.

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
from typing import Any, Iterable, Iterator, Mapping, Sequence

import kaldiio
import numpy as np
import torch
from torch import nn

from audiossl.data.fbank import FeatureNorm, normalize

logger = logging.getLogger(__name__)

OUTPUTS = ("frames", "clip", "tokens", "logits")


def resolve_model_norm(obj: dict[str, Any], mean: float | None = None, std: float | None = None,
                       where: str = "model.pt") -> FeatureNorm:
    """How a model.pt's features were normalised: explicit values, else the file's
    ``config.data.norm_mean/norm_std``, else the statistics of its ``config.data.train`` dump
    (:func:`audiossl.score.inference.resolve_norm`)."""
    from audiossl.score.inference import resolve_norm

    return resolve_norm(obj.get("config") or {}, mean, std, where=where)


# The fbank front end of each encoder task (the model family whose official code fixes it).
FBANK_KIND_OF_TASK = {"beats_ssl": "beats", "beats_tokenizer": "beats", "eat_pretrain": "eat"}


def fbank_kind(obj: dict[str, Any], where: str) -> str:
    """The fbank front end ("beats" or "eat") a loaded model.pt's encoder was trained on."""
    extra = obj.get("extra") or {}
    if extra.get("fbank_kind") in ("beats", "eat"):
        return extra["fbank_kind"]
    task = obj["task"]
    if task == "finetune":
        task = ((obj.get("config") or {}).get("model") or {}).get("encoder_task") or extra.get("encoder_task")
    if task not in FBANK_KIND_OF_TASK:
        raise ValueError(f"{where}: cannot tell the front end of an encoder of task {task!r} "
                         f"(known: {', '.join(sorted(FBANK_KIND_OF_TASK))})")
    return FBANK_KIND_OF_TASK[task]


@dataclass
class LoadedModel:
    """What :func:`load_for_extraction` found in a model.pt."""

    task: str
    norm: FeatureNorm
    encoder: nn.Module | None = None  # an AbsEncoder
    tokenizer: nn.Module | None = None  # has tokenize(feats, padding_mask)
    classifier: nn.Module | None = None  # a fine-tuned model (task finetune)
    window_frames: int | None = None  # the classifier's training length (data.target_frames)
    fbank_kind: str | None = None  # the front end its encoder was trained on (beats, eat)
    info: dict[str, Any] = field(default_factory=dict)


def load_for_extraction(
    model_path: str | os.PathLike, need_encoder: bool, need_tokenizer: bool,
    norm_mean: float | None = None, norm_std: float | None = None, need_classifier: bool = False,
) -> LoadedModel:
    """Load the encoder, tokenizer and/or classifier of a model.pt (eval mode, CPU), reading the
    file once."""
    from audiossl.tasks.encoder import load_encoder
    from audiossl.models.checkpoint import load_model

    obj = load_model(model_path)
    task = obj["task"]
    out = LoadedModel(task=task, norm=resolve_model_norm(obj, norm_mean, norm_std))
    try:
        out.fbank_kind = fbank_kind(obj, str(model_path))
    except ValueError:
        out.fbank_kind = None  # only feature dumps can be read then
    if need_tokenizer:
        if task != "beats_tokenizer":
            raise ValueError(f"{model_path}: labels come from a beats_tokenizer model.pt, this one is of task {task!r}")
        from audiossl.tasks.beats_tokenizer import load_tokenizer

        out.tokenizer = load_tokenizer(obj, str(model_path))
    if need_classifier:
        if task != "finetune":
            raise ValueError(f"{model_path}: logits come from a fine-tuned model.pt (task 'finetune'), this one is of task {task!r}")
        from audiossl.tasks.finetune import load_finetuned

        out.classifier = load_finetuned(obj, source=str(model_path))
        out.window_frames = ((obj.get("config") or {}).get("data") or {}).get("target_frames")
        if need_encoder:
            out.encoder = out.classifier.encoder
    if need_encoder and out.encoder is None:
        out.encoder = load_encoder(obj, str(model_path))
    return out


def audio_features(specs: dict[str, str], kind: str) -> Iterator[tuple[str, np.ndarray]]:
    """(utt, (T, 128) raw log-mel) of each ``utt -> wav.scp value`` (a path or a ``command |``),
    read at 16 kHz mono and through the ``kind`` front end, in the order given."""
    from audiossl.data.audio import load_audio
    from audiossl.data.fbank import compute_fbank

    for utt, spec in specs.items():
        wav = load_audio(spec)
        try:
            feats = compute_fbank(wav, kind)
        except ValueError as e:
            raise ValueError(f"{utt} ({spec}): {e}") from None
        yield utt, feats.numpy()


def same_length_batches(
    source: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], batch_size: int
) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Batches of (utt, (T, F) raw log-mel) of equal T, in order of first appearance; ``source`` is
    a dump (:class:`audiossl.data.dump.Dump`, utt -> features) or (utt, features) pairs."""
    if isinstance(source, Mapping):
        reader = source
        source = ((utt, reader[utt]) for utt in reader)
    pending: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = defaultdict(list)
    for utt, x in source:
        key = tuple(x.shape)
        pending[key].append((utt, x))
        if len(pending[key]) == batch_size:
            yield pending.pop(key)
    for batch in pending.values():
        yield batch


@torch.no_grad()
def extract(
    model: LoadedModel,
    feats_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    outputs: Sequence[str] = ("frames", "clip"),
    layer: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    audio: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write the requested outputs for every utterance of the dump ``feats_dir`` (fbank or raw), or of ``audio``
    (``utt -> wav.scp value``, through the model's front end), into ``out_dir``.

    Args:
        outputs: any of "frames", "clip", "tokens", "logits".
        layer: encoder layer whose outputs to take, 1..L (negative counts from the end); None: last.

    Returns:
        A summary: number of utterances, output files, embedding dim.
    """
    for o in outputs:
        assert o in OUTPUTS, f"unknown output {o!r}; choose from {OUTPUTS}"
    assert (feats_dir is None) != (audio is None), "give a feature dump or audio, not both"
    if audio is not None:
        if model.fbank_kind is None:
            raise ValueError("cannot tell this model's front end: extract from a feature dump (--feats) instead")
        source: Any = audio_features(audio, model.fbank_kind)
    else:
        from audiossl.data.dump import Dump

        source = Dump(feats_dir, model.fbank_kind)  # a raw dump goes through the model's front end
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
    if "logits" in outputs:
        assert model.classifier is not None, "logits need a fine-tuned classifier"
        model.classifier.to(device).eval()
        from audiossl.score.inference import score_features

        logits_of = _Logits(model.classifier)

    writers = {}
    for o in outputs:
        writers[o] = kaldiio.WriteHelper(f"ark,scp:{out / (o + '.ark')},{out / (o + '.scp')}")
    token_text: dict[str, list[int]] = {}
    n_utts, dim = 0, None
    try:
        for batch in same_length_batches(source, batch_size):
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
            if "logits" in writers:
                raws = [x for _, x in batch]
                logits, _ = score_features(logits_of, raws, model.norm, model.window_frames, batch_size=batch_size, device=device)
                for i, utt in enumerate(utts):
                    writers["logits"](utt, logits[i])
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


class _Logits(nn.Module):
    """A classifier whose ``predict`` gives its logits, for window scoring without the sigmoid or
    softmax."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.classifier.logits(batch["feats"], batch.get("padding_mask")).float()


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
