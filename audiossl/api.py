"""Audio in, embeddings, tokens or class scores out: a Python API over any model.pt, ours or imported.

    import audiossl
    model = audiossl.load_model("exp/eat_pretrain/model.pt")      # any model.pt with an encoder
    emb = model.embed("clip.wav")                                 # a path, an array or a tensor
    emb.frames, emb.times, emb.clip                               # (T', D), (T',) seconds, (D,)
    audiossl.load_model("exp/finetune_eat/model.pt").classify(wave, sample_rate=44100).top(5)
    audiossl.load_model("exp/beats_tok_r2/model.pt").tokens("clip.wav")  # (N,) int64 labels

What goes in: a path (anything ``soundfile`` reads), or samples as a numpy array or torch tensor with
their ``sample_rate``, mono ``(S,)`` or ``(channels, S)`` (torchaudio's layout; channels are
averaged), at any rate (resampled to 16 kHz with torchaudio), of any length of at least 25 ms; or a
list of those. A list is batched, but only clips of equal length share a forward pass, so every
result is exactly the one the clip gets alone.

The front end and the normalisation are the model's own: the fbank of its family (BEATs or EAT,
``audiossl.data.fbank``) and the ``norm_mean``/``norm_std`` its config was trained with (an imported
checkpoint carries the official constants), so no constants are needed.

Frames: the encoder's patch tokens, (N, D) in time-major patch order as ``audiossl.bin.extract``
writes them; ``frames`` averages each time step's frequency patches, (T', D) with T' = T // 16
steps of 160 ms, ``times`` their centres in seconds. ``clip`` is the mean of the tokens (or, with
``pooling="cls"``, EAT's CLS token). EAT's positions cover ``max_time_patches`` time steps (768,
about 2 minutes): a longer clip is cut into consecutive pieces of that length, each encoded alone,
and their tokens joined. ``classify`` scores a clip as ``audiossl.bin.score`` does: in windows of
the training length (``data.target_frames``), shorter clips padded to it, window scores averaged.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch

from audiossl.data.audio import AudioError, load_audio, mono_samples
from audiossl.data.fbank import MIN_SAMPLES, SAMPLE_RATE, FeatureNorm, compute_fbank, normalize

Audio = Union[str, os.PathLike, np.ndarray, torch.Tensor]

PATCH_FRAMES = 16  # both models' patches are 16 frames x 16 mel bins
FRAME_SHIFT_S = 0.010
FRAME_LENGTH_S = 0.025

@dataclass
class Embeddings:
    """What :meth:`AudioModel.embed` gives for one clip.

    Attributes:
        tokens: (N, D) patch tokens of the chosen layer, time-major (token n = step n // F', patch
            n % F' of the F' frequency patches), CLS excluded.
        frames: (T', D) the mean of each time step's F' tokens.
        times: (T',) seconds from the start of the clip to the centre of each time step.
        clip: (D,) the clip embedding (mean of the tokens, or the CLS token with pooling="cls").
    """

    tokens: torch.Tensor
    frames: torch.Tensor
    times: torch.Tensor
    clip: torch.Tensor


@dataclass
class ClassScores:
    """What :meth:`AudioModel.classify` gives for one clip: a probability per label (sigmoid for a
    multi-label model, softmax for a single-label one), in the model's label order."""

    labels: list[str]
    probs: torch.Tensor  # (C,)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable labels with their probabilities, most probable first."""
        p, i = self.probs.topk(min(k, len(self.labels)))
        return [(self.labels[j], float(v)) for v, j in zip(p.tolist(), i.tolist())]


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", bf16: bool = False) -> "AudioModel":
    """Load a model.pt (any task with an encoder, a BEATs tokenizer, or a fine-tuned classifier)
    for :meth:`AudioModel.embed`, :meth:`AudioModel.tokens` and :meth:`AudioModel.classify`.

    Args:
        device: where the model runs ("cpu", "cuda", "cuda:1", ...).
        bf16: run the encoder under bfloat16 autocast (CUDA only); outputs are float32.
    """
    from audiossl.score.extract import fbank_kind, resolve_model_norm
    from audiossl.models.checkpoint import load_model as read_model_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model.pt")
    obj = read_model_file(path)
    device = torch.device(device)
    if bf16 and device.type != "cuda":
        raise ValueError(f"bf16 runs on CUDA devices only, not {device}")
    return AudioModel(path, obj, fbank_kind(obj, str(path)), resolve_model_norm(obj), device, bf16)


class AudioModel:
    """A loaded model.pt that takes audio (see the module docstring); made by :func:`load_model`."""

    def __init__(self, path: Path, obj: dict[str, Any], kind: str, norm: FeatureNorm, device: torch.device, bf16: bool):
        self.path, self.task, self.kind, self.norm, self.device, self.bf16 = path, obj["task"], kind, norm, device, bf16
        self._obj = obj
        self._encoder: torch.nn.Module | None = None
        self._tokenizer: torch.nn.Module | None = None
        self._classifier: torch.nn.Module | None = None
        config = obj.get("config") or {}
        self.window_frames = (config.get("data") or {}).get("target_frames")  # classify's windows
        self.label_names: list[str] = list((obj.get("extra") or {}).get("label_names") or [])

    def __repr__(self) -> str:
        return f"AudioModel({str(self.path)!r}, task={self.task!r}, front end {self.kind}, device {self.device})"

    # --- the three outputs --------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, audio: Audio | Sequence[Audio], sample_rate: int | None = None, layer: int | None = None,
              pooling: str = "mean", cover_end: bool = False) -> Embeddings | list[Embeddings]:
        """Embeddings of one clip, or a list of them for a list of clips.

        Args:
            sample_rate: of array/tensor input (required there; a file says its own).
            layer: encoder layer 1..L (negative: from the top); None: the last layer's output.
            pooling: "mean" of the tokens, or "cls" (EAT's CLS token; last layer only).
            cover_end: complete the last, partial time step with zeros of raw log-mel (the
                scorer's padding) instead of leaving its frames out, so that ``frames`` reach the
                end of the clip.
        """
        from audiossl.score.extract import layer_index

        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        encoder = self._get_encoder()
        if pooling == "cls" and layer is not None:
            raise ValueError("pooling='cls' takes the last layer's CLS token; leave layer unset")
        max_frames = self._max_frames(encoder)

        def run(feats: torch.Tensor) -> list[Embeddings]:  # (B, T, F) normalised, equal T
            pieces = [feats[:, s : s + max_frames] for s in range(0, feats.shape[1], max_frames)] if max_frames else [feats]
            pieces = [p for p in pieces if p.shape[1] >= PATCH_FRAMES] or pieces[:1]
            toks, cls = [], []
            for p in pieces:
                with self._autocast():
                    out = encoder(p.to(self.device), None, output_hidden_states=layer is not None)
                t = out.tokens if layer is None else out.hidden_states[layer_index(layer, len(out.hidden_states))]
                toks.append(t.float().cpu())
                if pooling == "cls":
                    if out.cls is None:
                        raise ValueError(f"{self.path}: this encoder has no CLS token; use pooling='mean'")
                    cls.append(out.cls.float().cpu())
            tokens = torch.cat(toks, dim=1)  # (B, N, D)
            steps = sum(p.shape[1] // PATCH_FRAMES for p in pieces)
            assert tokens.shape[1] % steps == 0, f"{tokens.shape[1]} tokens are not {steps} time steps of equal size"
            per_step = tokens.shape[1] // steps
            frames = tokens.reshape(tokens.shape[0], steps, per_step, -1).mean(dim=2)  # (B, T', D)
            times = (torch.arange(steps) * PATCH_FRAMES + (PATCH_FRAMES - 1) / 2) * FRAME_SHIFT_S + FRAME_LENGTH_S / 2
            clip = torch.stack(cls).mean(0) if pooling == "cls" else tokens.mean(dim=1)
            return [Embeddings(tokens[b], frames[b], times.clone(), clip[b]) for b in range(tokens.shape[0])]

        return self._batched(audio, sample_rate, run, pad_to_patch=cover_end)

    @torch.no_grad()
    def tokens(self, audio: Audio | Sequence[Audio], sample_rate: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        """(N,) int64 tokenizer labels of one clip (time-major patch order), or a list of them."""
        tokenizer = self._get_tokenizer()

        def run(feats: torch.Tensor) -> list[torch.Tensor]:
            with self._autocast():
                labels = tokenizer.tokenize(feats.to(self.device), None)  # (B, N)
            return list(labels.long().cpu())

        return self._batched(audio, sample_rate, run)

    @torch.no_grad()
    def classify(self, audio: Audio | Sequence[Audio], sample_rate: int | None = None) -> ClassScores | list[ClassScores]:
        """Class probabilities of one clip (or a list), scored as ``audiossl.bin.score`` scores."""
        from audiossl.score.inference import score_features

        model = self._get_classifier()
        single = not isinstance(audio, (list, tuple))
        raws = [compute_fbank(w, self.kind).numpy() for w in self._waveforms(audio, sample_rate)]
        with self._autocast():
            scores, _ = score_features(model, raws, self.norm, self.window_frames, device=self.device)
        out = [ClassScores(self.label_names, torch.from_numpy(s)) for s in scores]
        return out[0] if single else out

    # --- loading, lazily: an encoder, a tokenizer or a classifier, as asked ------------------------
    def _get_encoder(self) -> torch.nn.Module:
        if self._encoder is None:
            if self.task == "finetune":
                self._encoder = self._get_classifier().encoder
            else:
                from audiossl.tasks.encoder import load_encoder

                self._encoder = load_encoder(self._obj, str(self.path)).to(self.device).eval()
        return self._encoder

    def _get_tokenizer(self) -> torch.nn.Module:
        if self._tokenizer is None:
            if self.task != "beats_tokenizer":
                raise ValueError(f"{self.path}: tokens come from a beats_tokenizer model.pt, this one is of task {self.task!r}")
            from audiossl.tasks.beats_tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self._obj, str(self.path)).to(self.device).eval()
        return self._tokenizer

    def _get_classifier(self) -> torch.nn.Module:
        if self._classifier is None:
            if self.task != "finetune":
                raise ValueError(f"{self.path}: class scores come from a fine-tuned model.pt (task 'finetune'), "
                                 f"this one is of task {self.task!r}")
            from audiossl.tasks.finetune import load_finetuned

            self._classifier = load_finetuned(self._obj, map_location=self.device)
            self.label_names = list(self._classifier.label_names)
        return self._classifier

    def _max_frames(self, encoder: torch.nn.Module) -> int | None:
        """The longest input the encoder's positions cover (EAT), or None (BEATs: any length)."""
        steps = getattr(getattr(encoder, "cfg", None), "max_time_patches", None)
        return steps * PATCH_FRAMES if steps else None

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16)

    # --- audio -> normalised fbank, batched by equal length -------------------------------------
    def _waveforms(self, audio: Audio | Sequence[Audio], sample_rate: int | None) -> list[torch.Tensor]:
        clips = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        if not clips:
            raise ValueError("no audio given (an empty list)")
        return [to_waveform(a, sample_rate, f"clip {i}" if len(clips) > 1 else "the clip") for i, a in enumerate(clips)]

    def _batched(self, audio, sample_rate, run, batch_size: int = 8, pad_to_patch: bool = False):
        single = not isinstance(audio, (list, tuple))
        feats = [normalize(compute_fbank(w, self.kind), self.norm) for w in self._waveforms(audio, sample_rate)]
        if pad_to_patch:
            zero = -self.norm.mean / (2 * self.norm.std)  # a zero of raw log-mel, normalised
            feats = [torch.cat([f, f.new_full((-f.shape[0] % PATCH_FRAMES, f.shape[1]), zero)]) for f in feats]
        for i, f in enumerate(feats):
            if f.shape[0] < PATCH_FRAMES:
                what = f"clip {i}" if not single else "the clip"
                raise ValueError(f"{what}: {f.shape[0]} frames are fewer than one patch ({PATCH_FRAMES} frames, 0.175 s)")
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, f in enumerate(feats):
            by_length[f.shape[0]].append(i)
        results: list[Any] = [None] * len(feats)
        for idx in by_length.values():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s : s + batch_size]
                for i, r in zip(chunk, run(torch.stack([feats[i] for i in chunk]))):
                    results[i] = r
        return results[0] if single else results


def to_waveform(audio: Audio, sample_rate: int | None, what: str = "the clip") -> torch.Tensor:
    """One clip as a (S,) float32 mono tensor at 16 kHz (see the module docstring for the input forms)."""
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(str(audio), target_sr=SAMPLE_RATE)
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(np.ascontiguousarray(audio))
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"{what}: expected a path, a numpy array or a torch tensor, got {type(audio).__name__}")
    if sample_rate is None:
        raise ValueError(f"{what}: samples need their sample_rate (e.g. embed(wave, sample_rate=16000))")
    if not audio.is_floating_point():
        raise TypeError(f"{what}: expected float samples in [-1, 1], got {audio.dtype}")
    if audio.dim() == 2 and audio.shape[0] > audio.shape[1]:
        raise ValueError(f"{what}: shape {tuple(audio.shape)} looks like (samples, channels); "
                         "give (channels, samples), e.g. the transpose of what soundfile reads")
    if audio.dim() not in (1, 2):
        raise ValueError(f"{what}: expected (samples,) or (channels, samples), got shape {tuple(audio.shape)}")
    samples = audio.detach().cpu().reshape(-1, audio.shape[-1]).T.numpy()  # (S, C), as soundfile reads
    try:
        wav = mono_samples(what, samples, int(sample_rate), SAMPLE_RATE)
    except AudioError as e:
        raise ValueError(str(e)) from None
    if wav.numel() < MIN_SAMPLES:
        raise ValueError(f"{what}: {wav.numel()} samples at 16 kHz are shorter than one 25 ms frame ({MIN_SAMPLES})")
    return wav
