"""Official EAT checkpoints <-> our ``model.pt``.

Released layouts (design notes section 4):

* fairseq pre-trained (``{'cfg', 'model', ...}``): the student under ``model`` as
  ``modality_encoders.IMAGE.{local_encoder.proj, extra_tokens, fixed_positional_encoder.positions,
  context_encoder.norm, decoder.blocks.{j}.0, decoder.proj}.*`` and ``blocks.{i}.*``, and the EMA
  teacher as a nested dict ``model['_ema']`` with the same encoder names (no decoder).
* fairseq fine-tuned: the encoder names prefixed ``model.``, plus ``fc_norm.*`` (LayerNorm, eps 1e-6)
  and ``head.*`` (Linear 768 -> 527); no decoder, no ``_ema``.
* Hugging Face (``model_type: eat``; a directory with ``config.json`` and ``model.safetensors`` or
  ``pytorch_model.bin``): ``model.{local_encoder.proj, extra_tokens, fixed_positional_encoder.positions,
  pre_norm, blocks.{i}}.*``; fine-tuned ones add ``model.fc_norm.*`` (eps 1e-5) and ``model.head.*``.

Position tables have 512 rows (64 time patches, older checkpoints) or 6144 (768, current code). The
official code computes them in float32 numpy, ~6e-5 from our float64-then-rounded formula: import
keeps the file's own table, as it is, in the encoder's ``pos_embed`` buffer (and records its length
as ``max_time_patches``), warns when it is not the fixed 2-D sin-cos table at all, and export writes
back exactly what was read, so import -> export is bit-exact and the model computes what the
official code computes with that file.

:func:`import_official` returns an :class:`ImportedModel` for :func:`audiossl.models.checkpoint.save_model`:
pre-trained files become task ``eat_pretrain`` (``encoder.*``, ``decoder.*``, ``teacher.*``), fine-tuned
ones task ``finetune`` (``encoder.*``, ``head_norm.*``, ``head.*``, CLS pooling; the classifier of
:mod:`audiossl.models.classifier`). :func:`export_official` goes back to either layout. Key mapping is
strict: any key left over on either side is an error listing the differences.

fairseq files pickle their config as omegaconf objects; we read them without omegaconf or fairseq
installed, standing in a placeholder for every class we do not know (and never running code from the
file), and take from the config only what the tensors cannot tell (heads, eps, training values).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from audiossl.data.fbank import EAT_NORM
from audiossl.models.eat.encoder import EATEncoder, sincos_positions_2d
from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel
from audiossl.models.checkpoint import CheckpointMismatch, ImportedModel, atomic_save, check_state_dict

# The released EAT models were pre-trained (and fine-tuned) on AudioSet with its constants
# (data/raw_audio_dataset.py:415-416), and fine-tuned on 1024-frame inputs (scripts/finetuning_AS2M.sh
# task.target_length): an imported file says so, so that it is fed as it was trained without flags.
# Fine-tuning it on another corpus sets that corpus's constants in its own config.
# What an import without decoder weights (the Hugging Face pre-trained layout) says of its decoder in
# model.pt's extra, and what a fairseq export of it then says in the file (key AUDIOSSL_NOTES).
FRESH_DECODER = "randomly initialised: the imported checkpoint had no decoder weights"
AUDIOSSL_NOTES = "audiossl_notes"
RELEASED_DATA = {"norm_mean": EAT_NORM["audioset"].mean, "norm_std": EAT_NORM["audioset"].std}
RELEASED_FINETUNED_DATA = {**RELEASED_DATA, "target_frames": 1024}

logger = logging.getLogger(__name__)

LAYOUTS = ("fairseq", "hf")
PRETRAIN_TASK = "eat_pretrain"
FINETUNE_TASK = "finetune"
FAIRSEQ_HEAD_NORM_EPS = 1e-6  # EAT_audio_classification.py: nn.LayerNorm(embed_dim, eps=1e-6)
HF_HEAD_NORM_EPS = 1e-5  # the Hugging Face port's fc_norm uses nn.LayerNorm's default
POSITION_TOLERANCE = 5e-4  # official tables are float32 numpy: ~6e-5 off the exact values


# --------------------------------------------------------------------------------------------
# Key names
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _EncoderNames:
    """Where an official layout keeps each encoder piece (our name -> theirs)."""

    patch: str
    cls: str
    positions: str
    norm: str
    blocks: str

    def ours_to_theirs(self, name: str) -> str:
        if name == "pos_embed":
            return self.positions
        for ours, theirs in (("patch_embed.proj.", self.patch), ("norm.", self.norm), ("blocks.", self.blocks)):
            if name.startswith(ours):
                return theirs + name[len(ours):]
        if name == "cls_token":
            return self.cls
        raise KeyError(f"no official name for encoder key {name!r}")

    def theirs_to_ours(self, name: str) -> str:
        """Our name for an official key; KeyError if unknown."""
        if name == self.positions:
            return "pos_embed"
        if name == self.cls:
            return "cls_token"
        for ours, theirs in (("patch_embed.proj.", self.patch), ("norm.", self.norm), ("blocks.", self.blocks)):
            if name.startswith(theirs):
                return ours + name[len(theirs):]
        raise KeyError(name)


def _fairseq_names(prefix: str = "") -> _EncoderNames:
    m = f"{prefix}modality_encoders.IMAGE."
    return _EncoderNames(
        patch=f"{m}local_encoder.proj.",
        cls=f"{m}extra_tokens",
        positions=f"{m}fixed_positional_encoder.positions",
        norm=f"{m}context_encoder.norm.",
        blocks=f"{prefix}blocks.",
    )


HF_NAMES = _EncoderNames(
    patch="model.local_encoder.proj.",
    cls="model.extra_tokens",
    positions="model.fixed_positional_encoder.positions",
    norm="model.pre_norm.",
    blocks="model.blocks.",
)
FAIRSEQ_DECODER = "modality_encoders.IMAGE.decoder."


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------
class _Opaque(dict):
    """Stands in for an instance of a class we do not load (omegaconf, fairseq, enums...); keeps
    what the pickle gave it so the config can still be read."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.args = args
        self.state: Any = None
        self.items_list: list[Any] = []

    def __setstate__(self, state):
        self.state = state

    def append(self, value):
        self.items_list.append(value)

    def extend(self, values):
        self.items_list.extend(values)


_SAFE_BUILTINS = {"set", "frozenset", "list", "dict", "tuple", "int", "float", "str", "bytes", "bytearray",
                  "bool", "complex", "slice", "range"}


def _allowed_global(module: str, name: str) -> bool:
    if module == "builtins":
        return name in _SAFE_BUILTINS
    if module == "collections":
        return name in {"OrderedDict", "defaultdict", "deque"}
    if (module, name) in {("copyreg", "_reconstructor"), ("_codecs", "encode"), ("torch.nn.parameter", "Parameter"),
                          ("numpy", "ndarray"), ("numpy", "dtype")}:
        return True
    if module in {"torch._utils", "torch._tensor"}:
        return name.startswith("_rebuild")
    if module == "torch":
        return name in {"Size", "device"} or isinstance(getattr(torch, name, None), torch.dtype)
    if module in {"numpy.core.multiarray", "numpy._core.multiarray"}:
        return name in {"_reconstruct", "scalar"}
    return module == "numpy.dtypes"


class _LenientUnpickler(pickle.Unpickler):
    """Resolves only plain-data globals; any other class becomes an :class:`_Opaque` subclass."""

    def find_class(self, module, name):
        if _allowed_global(module, name):
            return super().find_class(module, name)
        return type(f"Opaque[{module}.{name}]", (_Opaque,), {})


class _LenientPickleModule:
    """The ``pickle_module`` torch.load uses for files whose config needs classes we lack."""

    Unpickler = _LenientUnpickler
    load = pickle.load
    __name__ = "audiossl_lenient_pickle"


def _plain(obj: Any) -> Any:
    """Placeholder objects (omegaconf DictConfig / nodes, enums) -> plain dicts, lists and values."""
    if isinstance(obj, _Opaque):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            if "_content" in state:
                return _plain(state["_content"])
            if "_val" in state:
                return _plain(state["_val"])
        if obj.items_list:
            return [_plain(v) for v in obj.items_list]
        if len(obj):
            return {k: _plain(v) for k, v in obj.items()}
        if obj.args:
            return _plain(obj.args[0]) if len(obj.args) == 1 else [_plain(a) for a in obj.args]
        return _plain(state) if isinstance(state, dict) else None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file (8-byte header length, JSON header, raw little-endian data)."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8: 8 + header_len])
    except ValueError as e:
        raise ValueError(f"{path}: not a safetensors file (bad JSON header: {e})") from None
    body = memoryview(data)[8 + header_len:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        buf = bytearray(body[start:end])
        tensor = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = tensor.reshape(info["shape"]).clone()
    return out


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write tensors in the safetensors format (readable by the ``safetensors`` package)."""
    names = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # align the data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for raw in chunks:
            f.write(raw)


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # fairseq pickles its config as omegaconf objects: read them as placeholders.
        logger.info("%s: reading with placeholder classes for its pickled config", path)
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_LenientPickleModule)


def read_official(path: str | os.PathLike) -> tuple[str, dict[str, torch.Tensor], dict[str, Any], Any]:
    """Load an official file or directory.

    Returns:
        (layout, state dict, config dict (fairseq ``cfg`` or HF ``config.json``, plain), raw object).
    """
    path = Path(path)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: a Hugging Face model directory needs config.json")
        config = json.loads(config_file.read_text())
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                weights = path / name
                break
        else:
            raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin next to config.json")
        state = read_safetensors(weights) if weights.suffix == ".safetensors" else _torch_load(weights)
        return "hf", state, config, None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file or directory")
    if path.suffix == ".safetensors":
        config_file = path.parent / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        return "hf", read_safetensors(path), config, None
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], dict):  # fairseq: {'cfg', 'model', ...}
        return "fairseq", obj["model"], _plain(obj.get("cfg")) or {}, obj
    if any(k.startswith(HF_NAMES.blocks) for k in obj):  # a bare HF state dict
        return "hf", obj, {}, obj
    raise ValueError(
        f"{path}: not a released EAT checkpoint: no 'model' entry (fairseq) and no "
        f"'{HF_NAMES.blocks}*' keys (Hugging Face); top-level keys: {sorted(obj)[:10]}"
    )


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------
def _dig(cfg: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(cfg, dict) or k not in cfg:
            return None
        cfg = cfg[k]
    return cfg


def _config_from_tensors(
    state: dict[str, torch.Tensor], names: _EncoderNames, official: dict[str, Any], where: str
) -> EATPretrainConfig:
    """Our model config: shapes from the tensors, the rest from the official config (or defaults)."""
    for key in (names.patch + "weight", names.positions, names.blocks + "0.mlp.fc1.weight"):
        if key not in state:
            raise CheckpointMismatch(f"{where}: no {key!r}; not an EAT checkpoint of this layout")
    proj = state[names.patch + "weight"]  # (D, 1, p, p)
    D, p = proj.shape[0], proj.shape[-1]
    depth = 1 + max(int(k[len(names.blocks):].split(".")[0]) for k in state if k.startswith(names.blocks))
    hidden = state[names.blocks + "0.mlp.fc1.weight"].shape[0]
    num_mel_bins = int(official.get("mel_bins") or 128)  # the fairseq code fixes 128 bins
    rows = state[names.positions].reshape(-1, D).shape[0]
    freq = num_mel_bins // p
    if rows % freq:
        raise CheckpointMismatch(f"{where}: position table has {rows} rows, not a multiple of {freq} frequency patches")

    values: dict[str, Any] = {
        "embed_dim": D, "depth": depth, "mlp_ratio": hidden / D, "patch_size": p,
        "num_mel_bins": num_mel_bins, "max_time_patches": rows // freq,
        "num_heads": official.get("num_heads") or max(D // 64, 1),  # 64-dim heads in every EAT size
    }
    if official.get("norm_eps") is not None:
        values["norm_eps"] = float(official["norm_eps"])
    for key in ("clone_batch", "average_top_k_layers", "ema_decay", "ema_end_decay", "ema_anneal_end_step", "cls_loss"):
        if official.get(key) is not None:
            values[key] = official[key]
    image = _dig(official, "modalities", "image") or {}
    for key in ("mask_prob", "mask_prob_adjust", "mask_length", "mask_noise_std"):
        if image.get(key) is not None:
            values[key] = image[key]
    dec = FAIRSEQ_DECODER + "blocks."
    dec_layers = {int(k[len(dec):].split(".")[0]) for k in state if k.startswith(dec)}
    if dec_layers:
        conv = state[dec + "0.0.weight"]  # (decoder_dim, D / groups, k, k)
        values.update(decoder_dim=conv.shape[0], decoder_layers=len(dec_layers),
                      decoder_kernel=conv.shape[-1], decoder_groups=D // conv.shape[1])
    values["average_top_k_layers"] = min(int(values.get("average_top_k_layers", depth)), depth)
    types = {f.name: f.type for f in fields(EATPretrainConfig)}
    for k, v in values.items():  # official configs may hold 1e-6 as a string or 12 as a float
        if types[k] == "int":
            values[k] = int(v)
        elif types[k] == "float":
            values[k] = float(v)
    return EATPretrainConfig(**values)


def _check_positions(table: torch.Tensor, cfg: EATPretrainConfig, where: str) -> None:
    """Warn when a file's position table is not the fixed 2-D sin-cos one (it is kept either way)."""
    D = cfg.embed_dim
    ours = sincos_positions_2d(cfg.max_time_patches, cfg.num_mel_bins // cfg.patch_size, D)
    diff = (ours - table.reshape(-1, D).float()).abs().max().item()
    if diff > POSITION_TOLERANCE:
        logger.warning(
            "%s: its position table differs from the fixed 2-D sin-cos table by up to %.3g (official files: "
            "~6e-5): kept as stored, the model uses it, and an export writes it back", where, diff,
        )


def _rename_encoder(
    state: dict[str, torch.Tensor], names: _EncoderNames, prefix: str, out: dict[str, torch.Tensor],
    leftovers: list[str],
) -> None:
    """Add ``prefix + our name`` for every encoder key of ``state``; others go to ``leftovers``."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            leftovers.append(key)
            continue
        try:
            ours = names.theirs_to_ours(key)
        except KeyError:
            leftovers.append(key)
            continue
        if ours == "pos_embed":  # official (1, rows, D) -> ours (rows, D), the same values
            value = value.reshape(-1, value.shape[-1])
        out[prefix + ours] = value.detach().clone()


def _detect_layout(state: dict[str, Any]) -> tuple[str, bool]:
    """(names style, fine-tuned?) of a state dict."""
    if any(k.startswith("model.local_encoder.") for k in state):
        return "hf", "model.head.weight" in state
    if any(k.startswith("model.modality_encoders.") for k in state):
        return "fairseq", True
    if any(k.startswith("modality_encoders.") for k in state):
        return "fairseq", False
    raise CheckpointMismatch(f"unknown EAT key layout; first keys: {sorted(state)[:8]}")


def import_official(path: str | os.PathLike, layout: str = "auto", use_teacher: bool = False) -> ImportedModel:
    """Convert a released EAT checkpoint (fairseq file or Hugging Face directory) to our layout.

    Args:
        path: fairseq ``.pt`` file, Hugging Face directory (config.json + weights), or a
            ``.safetensors`` / bare HF state-dict file.
        layout: "auto", "fairseq" or "hf"; "auto" tells them apart by their key names.
        use_teacher: pre-trained fairseq files only: make the EMA teacher (``model['_ema']``) the
            encoder instead of the student (official fine-tuning starts from the student).

    Returns:
        An :class:`ImportedModel`; pass its fields to ``audiossl.models.checkpoint.save_model``.
    """
    assert layout in ("auto",) + LAYOUTS, f"layout must be auto, fairseq or hf, got {layout!r}"
    where = str(path)
    file_layout, state, official, raw = read_official(path)
    style, finetuned = _detect_layout(state)
    if layout != "auto" and layout != style:
        raise CheckpointMismatch(f"{where}: asked for layout {layout!r} but its keys are the {style!r} layout")

    if style == "hf":
        names, model_cfg_src = HF_NAMES, official
    else:
        names = _fairseq_names("model." if finetuned else "")
        model_cfg_src = _dig(official, "model") or {}
        if finetuned:  # the pre-training config rides inside the fine-tuning one, which may set norm_eps
            eps = model_cfg_src.get("norm_eps")
            model_cfg_src = dict(_dig(model_cfg_src, "pretrained_model_args", "model") or {})
            if eps is not None:
                model_cfg_src["norm_eps"] = eps
    cfg = _config_from_tensors(state, names, model_cfg_src, where)
    _check_positions(state[names.positions], cfg, where)
    extra: dict[str, Any] = {"source": where, "layout": style, "fbank_kind": "eat"}

    if finetuned:
        return _import_finetuned(state, names, style, cfg, official, extra, where)
    if use_teacher and "_ema" not in state:
        raise CheckpointMismatch(f"{where}: use_teacher needs the EMA teacher ('_ema'), which this file lacks")

    # Pre-trained: encoder, decoder, teacher.
    out: dict[str, torch.Tensor] = {}
    leftovers: list[str] = []
    student = {k: v for k, v in state.items() if k != "_ema" and not k.startswith(FAIRSEQ_DECODER)}
    teacher = state.get("_ema")
    # With use_teacher the student's encoder weights are left out (the decoder is kept).
    _rename_encoder(teacher if use_teacher else student, names, "encoder.", out, leftovers)
    for key, value in state.items():
        if key.startswith(FAIRSEQ_DECODER):
            out["decoder." + key[len(FAIRSEQ_DECODER):]] = value.detach().clone()
    fresh = EATPretrainModel(cfg).state_dict()
    if teacher is not None:
        _check_positions(teacher[names.positions], cfg, where + " ['_ema']")
        _rename_encoder(teacher, names, "teacher.", out, [] if use_teacher else leftovers)
    else:
        logger.warning("%s: no EMA teacher ('_ema'): the teacher starts as a copy of the student", where)
        out.update({"teacher." + k[len("encoder."):]: v.clone() for k, v in out.items() if k.startswith("encoder.")})
    extra["decoder"] = "imported"
    if isinstance(raw, dict) and (raw.get(AUDIOSSL_NOTES) or {}).get("decoder"):
        extra["decoder"] = raw[AUDIOSSL_NOTES]["decoder"]  # an export of ours that says what it held
    if not any(k.startswith("decoder.") for k in out):
        logger.warning("%s: no decoder weights (%s layout): the decoder is freshly initialised", where, style)
        out.update({k: v for k, v in fresh.items() if k.startswith("decoder.")})
        extra["decoder"] = FRESH_DECODER
    num_updates = 0
    if isinstance(raw, dict) and raw.get("optimizer_history"):
        num_updates = int(_plain(raw["optimizer_history"])[-1].get("num_updates", 0) or 0)
    out["num_updates"] = torch.tensor(num_updates, dtype=torch.long)
    check_state_dict(fresh, out, f"{where}: as an EAT model", unplaced=tuple(leftovers))
    extra.update(use_teacher=use_teacher, num_updates=num_updates)
    return ImportedModel(PRETRAIN_TASK, asdict(cfg), out, extra, RELEASED_DATA)


def _import_finetuned(
    state: dict[str, torch.Tensor], names: _EncoderNames, style: str, cfg: EATPretrainConfig,
    official: dict[str, Any], extra: dict[str, Any], where: str,
) -> ImportedModel:
    head_prefix = "model." if style == "hf" else ""
    out: dict[str, torch.Tensor] = {}
    leftovers: list[str] = []
    head_keys = (head_prefix + "fc_norm.", head_prefix + "head.")
    encoder_state = {k: v for k, v in state.items() if not k.startswith(head_keys)}
    _rename_encoder(encoder_state, names, "encoder.", out, leftovers)
    for ours, theirs in (("head_norm.", head_prefix + "fc_norm."), ("head.", head_prefix + "head.")):
        for key, value in state.items():
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value.detach().clone()
    if "head.weight" not in out:
        raise CheckpointMismatch(f"{where}: fine-tuned checkpoint without {head_prefix}head.weight")
    num_classes = out["head.weight"].shape[0]
    head_norm = "head_norm.weight" in out
    eps = HF_HEAD_NORM_EPS if style == "hf" else FAIRSEQ_HEAD_NORM_EPS

    expected = {"encoder." + k: v for k, v in EATEncoder(cfg.encoder_config()).state_dict().items()}
    D = cfg.embed_dim
    expected["head.weight"], expected["head.bias"] = torch.empty(num_classes, D), torch.empty(num_classes)
    if head_norm:
        expected["head_norm.weight"], expected["head_norm.bias"] = torch.empty(D), torch.empty(D)
    check_state_dict(expected, out, f"{where}: as an EAT model", unplaced=tuple(leftovers))

    model_config = finetune_model_config(cfg, num_classes, head_norm=head_norm, head_norm_eps=eps)
    extra.update(pooling="cls", encoder_task=PRETRAIN_TASK, encoder=model_config["encoder"])
    labels = _label_names(official, num_classes)
    if labels:
        extra["label_names"] = labels
    return ImportedModel(FINETUNE_TASK, model_config, out, extra, RELEASED_FINETUNED_DATA)


def finetune_model_config(
    encoder_cfg: EATPretrainConfig, num_classes: int, head_norm: bool = True, head_norm_eps: float = 1e-6
) -> dict[str, Any]:
    """The ``model:`` section we write for an imported fine-tuned EAT (task ``finetune``)."""
    return {
        "encoder_task": PRETRAIN_TASK,
        "encoder": asdict(encoder_cfg),
        "num_classes": num_classes,
        "pooling": "cls",
        "head_norm": head_norm,
        "head_norm_eps": head_norm_eps,
    }


def _label_names(official: dict[str, Any], num_classes: int) -> list[str] | None:
    id2label = official.get("id2label") if isinstance(official, dict) else None
    if isinstance(id2label, dict) and len(id2label) == num_classes:
        return [str(id2label.get(str(i), id2label.get(i))) for i in range(num_classes)]
    return None


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------
def _export_encoder(
    state: dict[str, torch.Tensor], prefix: str, names: _EncoderNames, cfg: EATPretrainConfig
) -> dict[str, torch.Tensor]:
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if "pos_embed" not in own:  # a model.pt written before the table was kept: the formula's
        freq = cfg.num_mel_bins // cfg.patch_size
        own["pos_embed"] = sincos_positions_2d(cfg.max_time_patches, freq, cfg.embed_dim)
    out = {names.ours_to_theirs(k): v.clone() for k, v in own.items()}
    out[names.positions] = out[names.positions].unsqueeze(0)  # (1, rows, D), as the official files
    return out


def _official_model_cfg(cfg: EATPretrainConfig) -> dict[str, Any]:
    """The official ``cfg.model`` entries our config determines (data2vec_multi names)."""
    return {
        "_name": "data2vec_multi", "embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads,
        "mlp_ratio": cfg.mlp_ratio, "norm_eps": cfg.norm_eps, "clone_batch": cfg.clone_batch,
        "average_top_k_layers": cfg.average_top_k_layers, "ema_decay": cfg.ema_decay,
        "ema_end_decay": cfg.ema_end_decay, "ema_anneal_end_step": cfg.ema_anneal_end_step, "cls_loss": cfg.cls_loss,
        "layer_norm_first": False, "supported_modality": "IMAGE",
        "modalities": {"image": {
            "in_chans": 1, "patch_size": cfg.patch_size, "max_length": cfg.max_time_patches, "inverse_mask": True,
            "mask_prob": cfg.mask_prob, "mask_prob_adjust": cfg.mask_prob_adjust, "mask_length": cfg.mask_length,
            "mask_noise_std": cfg.mask_noise_std, "num_extra_tokens": 1,
            "decoder": {"decoder_dim": cfg.decoder_dim, "decoder_layers": cfg.decoder_layers,
                        "decoder_kernel": cfg.decoder_kernel, "decoder_groups": cfg.decoder_groups},
        }},
    }


# The released Hugging Face models load with AutoModel.from_pretrained(..., trust_remote_code=True):
# their config.json names the architecture and, in auto_map, the code that builds it. Our exports
# carry no code of their own: auto_map points at the released repositories' code ("<repo>--<module>.<class>",
# which transformers fetches from that repository), so an export loads the same way.
HF_CODE_REPOS = {"pretrain": "worstchan/EAT-base_epoch30_pretrain", "finetune": "worstchan/EAT-base_epoch30_finetune_AS2M"}
HF_RELEASED_NUM_CLASSES = 527  # what the released configs say, pre-trained ones included (AudioSet's classes)


def _hf_config(cfg: EATPretrainConfig, variant: str, num_classes: int, input_frames: int, code_repo: str) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face export: every field of the released EAT configs."""
    return {
        "architectures": ["EATModel"],
        "auto_map": {"AutoConfig": f"{code_repo}--configuration_eat.EATConfig",
                     "AutoModel": f"{code_repo}--modeling_eat.EATModel"},
        "model_type": "eat", "model_variant": variant,
        "embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio,
        "patch_size": cfg.patch_size, "stride": cfg.patch_size, "in_chans": 1, "mel_bins": cfg.num_mel_bins,
        "max_length": cfg.max_time_patches, "img_size": [input_frames, cfg.num_mel_bins],
        "num_classes": num_classes, "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0,
        "activation_dropout": 0.0, "post_mlp_drop": 0.0, "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0,
        "layer_norm_first": False, "norm_eps": cfg.norm_eps, "norm_affine": True, "fixed_positions": True,
        "torch_dtype": "float32",
    }


def export_official(model_pt: dict[str, Any], layout: str = "fairseq", hf_code_repo: str | None = None) -> dict[str, Any]:
    """Convert a loaded ``model.pt`` (``load_model``) of task eat_pretrain or finetune (EAT encoder)
    to a released layout.

    Args:
        hf_code_repo: for ``hf``, the Hugging Face repository whose ``configuration_eat.py`` and
            ``modeling_eat.py`` the export's ``auto_map`` names (default: the released base model of
            the variant, :data:`HF_CODE_REPOS`).

    Returns:
        fairseq: ``{'cfg': {'model': ...}, 'model': state dict (+ '_ema'), 'optimizer_history': [...]}``,
        ready for ``torch.save``; hf: ``{'config': config.json dict, 'state_dict': ...}``, see
        :func:`save_official`. The fairseq ``cfg`` is a plain dict holding only the model entries
        our config determines: to run the official fairseq code on the file, merge it into a full
        official config (``config/pretraining_AS2M.yaml`` / ``finetuning.yaml``).
    """
    assert layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {layout!r}"
    task, state = model_pt["task"], model_pt["model"]
    model_section = model_pt["config"].get("model", model_pt["config"])
    frames = int((model_pt["config"].get("data") or {}).get("target_frames") or 1024)  # img_size of HF configs
    if task == PRETRAIN_TASK:
        cfg = EATPretrainConfig(**model_section)
        if layout == "hf":
            enc = _export_encoder(state, "encoder.", HF_NAMES, cfg)
            config = _hf_config(cfg, "pretrain", HF_RELEASED_NUM_CLASSES, frames, hf_code_repo or HF_CODE_REPOS["pretrain"])
            return {"config": config, "state_dict": enc}
        names = _fairseq_names()
        out = _export_encoder(state, "encoder.", names, cfg)
        out.update({
            FAIRSEQ_DECODER + k[len("decoder."):]: v.clone() for k, v in state.items() if k.startswith("decoder.")
        })
        out["_ema"] = _export_encoder(state, "teacher.", names, cfg)
        num_updates = int(state["num_updates"]) if "num_updates" in state else 0
        official = {"cfg": {"model": _official_model_cfg(cfg)}, "model": out,
                    "optimizer_history": [{"num_updates": num_updates}]}
        if (model_pt.get("extra") or {}).get("decoder") == FRESH_DECODER:
            # the fairseq layout has decoder keys: they are written, and the file says what they are
            logger.warning("export_official: this model's decoder is %s; the file says so under %r", FRESH_DECODER, AUDIOSSL_NOTES)
            official[AUDIOSSL_NOTES] = {"decoder": FRESH_DECODER}
        return official

    eat_encoder = isinstance(model_section.get("encoder"), dict) and model_section.get("encoder_task") == PRETRAIN_TASK
    if task != FINETUNE_TASK or not eat_encoder:
        raise ValueError(
            f"export_official: need a model.pt of task {PRETRAIN_TASK!r} or a {FINETUNE_TASK!r} one over an EAT "
            f"encoder (model.encoder_task: {PRETRAIN_TASK}); got task {task!r}"
        )
    cfg = EATPretrainConfig(**model_section["encoder"])
    unknown = sorted(k for k in state if not k.startswith(("encoder.", "head_norm.", "head.")))
    if unknown:
        raise CheckpointMismatch(f"export_official: keys with no place in an official fine-tuned EAT: {unknown[:10]}")
    num_classes = state["head.weight"].shape[0]
    head = {k: v.clone() for k, v in state.items() if k.startswith(("head.", "head_norm."))}
    eps = model_section.get("head_norm_eps", FAIRSEQ_HEAD_NORM_EPS)
    layout_eps = HF_HEAD_NORM_EPS if layout == "hf" else FAIRSEQ_HEAD_NORM_EPS
    if "head_norm.weight" in state and eps != layout_eps:
        logger.warning("the %s model's fc_norm uses eps %g; this model's head norm used %g: logits will differ "
                       "slightly", layout, layout_eps, eps)
    if layout == "hf":
        out = _export_encoder(state, "encoder.", HF_NAMES, cfg)
        out.update({"model." + k.replace("head_norm.", "fc_norm."): v for k, v in head.items()})
        config = _hf_config(cfg, "finetune", num_classes, frames, hf_code_repo or HF_CODE_REPOS["finetune"])
        return {"config": config, "state_dict": out}
    out = _export_encoder(state, "encoder.", _fairseq_names("model."), cfg)
    out.update({k.replace("head_norm.", "fc_norm."): v for k, v in head.items()})
    official = {
        "_name": "mae_image_classification", "num_classes": num_classes, "prediction_mode": "CLS_TOKEN",
        "use_fc_norm": "head_norm.weight" in state, "pretrained_model_args": {"model": _official_model_cfg(cfg)},
    }
    return {"cfg": {"model": official}, "model": out}


def save_official(exported: dict[str, Any], path: str | os.PathLike) -> None:
    """Write :func:`export_official`'s result: a fairseq ``.pt`` file, or (an HF export) a directory
    with ``config.json`` and ``model.safetensors``."""
    path = Path(path)
    if "config" in exported and "state_dict" in exported:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(exported["config"], indent=2) + "\n")
        write_safetensors(exported["state_dict"], path / "model.safetensors")
        return
    atomic_save(exported, path)
