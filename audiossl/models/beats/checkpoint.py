"""Official BEATs checkpoints <-> our model.pt files, and loading encoders/tokenizers from model.pt.

Official files (microsoft/unilm ``beats/``) are ``{'cfg': dict, 'model': state_dict}``, plus
``'label_dict'`` in fine-tuned ones. Three kinds:

* pre-trained BEATs: backbone keys only -> task ``beats_ssl``, keys ``encoder.<official key>``;
* fine-tuned BEATs (``cfg['finetuned_model']``, ``predictor.*``): the official head is a per-patch
  Linear whose logits are averaged over non-padded patches before the sigmoid; a Linear commutes with
  the mean, so this is exactly "mean-pool the tokens, then Linear", our classifier with
  ``pooling: mean``: task ``finetune``, ``predictor.{weight,bias}`` -> ``head.{weight,bias}``,
  ``label_dict`` -> ``extra['label_names']``;
* Tokenizers (``quantize.*``, ``quantize_layer.*``): task ``beats_tokenizer`` (kind distilled), keys
  ``encoder.<backbone key>`` and ``quantize*`` unchanged (no estimator: it can tokenize, not train).

The positional convolution's weight norm is stored as ``weight_g``/``weight_v`` in official files
and in ours; files saved with torch's newer ``parametrizations.weight_norm`` use
``parametrizations.weight.original0``/``original1`` for the same tensors: both are accepted.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from audiossl.data.fbank import BEATS_NORM
from audiossl.models.beats.backbone import BEATsBackbone, WeightNormConv1d
from audiossl.models.beats.config import OFFICIAL_CLASS_DEFAULTS, OFFICIAL_TOKENIZER_DEFAULTS, BEATsConfig
from audiossl.models.checkpoint import ImportedModel, check_state_dict, upgrade_state_dict

logger = logging.getLogger(__name__)

# Every BEATs checkpoint expects the official normalisation (BEATs.py, preprocess()).
OFFICIAL_DATA = {"norm_mean": BEATS_NORM.mean, "norm_std": BEATS_NORM.std}

POS_CONV_TAIL = "pos_conv.0."  # the weight-normed positional convolution (keys end with this + name)


def to_parametrized_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``...pos_conv.0.weight_g/weight_v`` renamed as ``torch.nn.utils.parametrizations.weight_norm``
    names them (for tools built on it); loading maps them back (``WeightNormConv1d.upgrade_state_dict``)."""
    out = {}
    for k, v in state.items():
        for legacy, new in WeightNormConv1d.PARAMETRIZED_NAMES.items():
            if k.endswith(POS_CONV_TAIL + legacy):
                k = k[: -len(legacy)] + new
        out[k] = v
    return out


def _share_relative_bias(state: dict[str, torch.Tensor], source: str) -> None:
    """Every layer's copy of the shared relative-position embedding must hold layer 0's values."""
    keys = sorted(k for k in state if k.endswith("self_attn.relative_attention_bias.weight"))
    first = next((k for k in keys if ".layers.0." in k), None)
    if first is None:
        return
    for k in keys:
        if not torch.equal(state[k], state[first]):
            logger.warning("%s: %s differs from %s; the model shares one embedding, using layer 0's", source, k, first)
            state[k] = state[first]


# --------------------------------------------------------------------------------------------
# Official files -> model.pt
# --------------------------------------------------------------------------------------------
def _read_official(path_or_obj) -> tuple[dict[str, Any], str]:
    if isinstance(path_or_obj, Mapping):
        return dict(path_or_obj), "<official checkpoint dict>"
    path = Path(path_or_obj)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # older pickles may hold more than tensors and plain containers
        logger.warning("%s: weights-only load failed (%s); loading the full pickle", path, e)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    return obj, str(path)


def detect_kind(obj: Mapping[str, Any]) -> str:
    """"tokenizer", "finetuned" or "pretrained" for an official checkpoint dict."""
    keys = obj["model"].keys()
    if any(k.startswith(("quantize.", "quantize_layer.")) for k in keys):
        return "tokenizer"
    if "predictor.weight" in keys or obj["cfg"].get("finetuned_model", False):
        return "finetuned"
    return "pretrained"


def import_official(path: str | os.PathLike | Mapping[str, Any], kind: str = "auto") -> ImportedModel:
    """Convert an official BEATs / Tokenizers checkpoint (file or loaded dict) into our layout.

    Args:
        path: the official ``.pt`` file, or its loaded dict.
        kind: "auto" (from the keys), "pretrained", "finetuned" or "tokenizer".

    Raises:
        ValueError naming the file and listing missing/unexpected/mis-shaped keys.
    """
    obj, source = _read_official(path)
    for key in ("cfg", "model"):
        if key not in obj:
            raise ValueError(f"{source}: not an official BEATs checkpoint (no {key!r} entry; keys: {sorted(obj)})")
    if kind == "auto":
        kind = detect_kind(obj)
    assert kind in ("pretrained", "finetuned", "tokenizer"), f"unknown checkpoint kind {kind!r}"
    cfg = BEATsConfig.from_official(obj["cfg"])
    with torch.device("meta"):
        backbone = BEATsBackbone(cfg)
    state = upgrade_state_dict(backbone, {k: v for k, v in obj["model"].items() if not k.startswith("quantize")})
    state.update({k: v for k, v in obj["model"].items() if k.startswith("quantize")})
    _share_relative_bias(state, source)
    expected = {k: v.shape for k, v in backbone.state_dict().items()}
    extra: dict[str, Any] = {"source": f"official BEATs ({kind})", "official_cfg": dict(obj["cfg"])}

    if kind == "tokenizer":
        from audiossl.models.beats.tokenizer import TokenizerConfig

        quant_n = int(obj["cfg"].get("quant_n", OFFICIAL_TOKENIZER_DEFAULTS["quant_n"]))
        quant_dim = int(obj["cfg"].get("quant_dim", OFFICIAL_TOKENIZER_DEFAULTS["quant_dim"]))
        D = cfg.encoder_embed_dim
        expected.update({
            "quantize_layer.0.weight": (D, D), "quantize_layer.0.bias": (D,),
            "quantize_layer.2.weight": (quant_dim, D), "quantize_layer.2.bias": (quant_dim,),
            "quantize.embedding.weight": (quant_n, quant_dim), "quantize.embedding.cluster_size": (quant_n,),
            "quantize.embedding.embed_avg": (quant_n, quant_dim), "quantize.embedding.initted": (1,),
            "quantize.cluster_size": (quant_n,),
        })
        check_state_dict(expected, state, source)
        model_cfg = TokenizerConfig(kind="distilled", codebook_size=quant_n, codebook_dim=quant_dim, encoder=cfg)
        out = {(k if k.startswith("quantize") else f"encoder.{k}"): v for k, v in state.items()}
        return ImportedModel("beats_tokenizer", dataclasses.asdict(model_cfg), out, extra, OFFICIAL_DATA)

    if kind == "finetuned":
        num_classes = int(state["predictor.weight"].shape[0]) if "predictor.weight" in state else cfg.predictor_class
        expected.update({"predictor.weight": (num_classes, cfg.encoder_embed_dim), "predictor.bias": (num_classes,)})
        check_state_dict(expected, state, source)
        out = {f"encoder.{k}": v for k, v in state.items() if not k.startswith("predictor.")}
        out["head.weight"] = state["predictor.weight"]
        out["head.bias"] = state["predictor.bias"]
        label_dict = obj.get("label_dict")
        if label_dict:
            extra["label_names"] = [str(label_dict[i]) for i in sorted(label_dict)]
        # Our classifier (task "finetune"): a beats_ssl encoder, mean pooling, no norm before the head.
        from audiossl.models.beats.ssl import SSLConfig

        encoder_section = dataclasses.asdict(SSLConfig(encoder=cfg, tokenizer=None))
        model_cfg = {
            "encoder_task": "beats_ssl",
            "encoder": encoder_section,
            "num_classes": num_classes,
            "pooling": "mean",
            "head_norm": False,
        }
        extra.update(encoder_task="beats_ssl", encoder=encoder_section, pooling="mean")
        return ImportedModel("finetune", model_cfg, out, extra, OFFICIAL_DATA)

    from audiossl.models.beats.ssl import SSLConfig

    check_state_dict(expected, state, source)
    model_cfg = SSLConfig(encoder=cfg, tokenizer=None)
    out = {f"encoder.{k}": v for k, v in state.items()}
    return ImportedModel("beats_ssl", dataclasses.asdict(model_cfg), out, extra, OFFICIAL_DATA)


# --------------------------------------------------------------------------------------------
# model.pt -> official files
# --------------------------------------------------------------------------------------------
def export_official(model_pt: Mapping[str, Any], weight_norm_keys: str = "legacy") -> dict[str, Any]:
    """Our model.pt dict (``audiossl.models.checkpoint.load_model``) -> the official layout.

    Supports tasks ``beats_ssl`` (a pre-trained BEATs), ``beats_tokenizer`` of kind distilled (a
    Tokenizers file; the estimator is dropped) and ``finetune`` with a BEATs encoder, mean pooling and
    no head norm (a fine-tuned BEATs with ``predictor.*`` and ``label_dict``).

    Args:
        weight_norm_keys: "legacy" (``weight_g``/``weight_v``, as released) or "parametrizations".
    """
    assert weight_norm_keys in ("legacy", "parametrizations"), f"weight_norm_keys {weight_norm_keys!r}"
    task = model_pt.get("task")
    model_section = (model_pt.get("config") or {}).get("model") or {}
    state = model_pt["model"]
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder_state:
        raise ValueError(f"model.pt of task {task!r} has no encoder.* keys: nothing to export")
    if task == "finetune":  # the classifier's encoder: {"encoder_task": ..., "encoder": <its ModelConfig>}
        if model_section.get("encoder_task") not in ("beats_ssl", "beats_tokenizer"):
            raise ValueError(f"a finetune model.pt with a {model_section.get('encoder_task')!r} encoder is not a BEATs model")
        model_section_enc = (model_section.get("encoder") or {}).get("encoder") or {}
    else:
        model_section_enc = model_section.get("encoder") or {}
    cfg = BEATsConfig.from_dict(model_section_enc, where="config.model.encoder")
    official_cfg = cfg.to_official()
    out: dict[str, Any]

    if task == "beats_ssl":
        out = {"cfg": official_cfg, "model": dict(encoder_state)}
    elif task == "beats_tokenizer":
        if model_section.get("kind", "distilled") != "distilled":
            raise ValueError("only a distilled tokenizer has an official layout (the random-projection one has none)")
        skip = ("layer_wise_gradient_decay_ratio", "finetuned_model", "predictor_dropout", "predictor_class")
        tok_cfg = {k: v for k, v in official_cfg.items() if k not in skip}
        tok_cfg["quant_n"] = int(model_section.get("codebook_size", OFFICIAL_TOKENIZER_DEFAULTS["quant_n"]))
        tok_cfg["quant_dim"] = int(model_section.get("codebook_dim", OFFICIAL_TOKENIZER_DEFAULTS["quant_dim"]))
        model = dict(encoder_state)
        model.update({k: v for k, v in state.items() if k.startswith(("quantize.", "quantize_layer."))})
        out = {"cfg": tok_cfg, "model": model}
    elif task == "finetune":
        if any(k.startswith("head_norm.") for k in state):
            raise ValueError("this classifier has a norm before its head (head_norm.*): official BEATs has none")
        if model_section.get("pooling", "mean") != "mean":
            raise ValueError(f"pooling {model_section.get('pooling')!r}: official BEATs averages its patches (mean)")
        model = dict(encoder_state)
        model["predictor.weight"] = state["head.weight"]
        model["predictor.bias"] = state["head.bias"]
        official_cfg.update(finetuned_model=True, predictor_class=int(state["head.weight"].shape[0]))
        out = {"cfg": official_cfg, "model": model}
        names = (model_pt.get("extra") or {}).get("label_names")
        if names:
            out["label_dict"] = {i: name for i, name in enumerate(names)}
    else:
        raise ValueError(f"cannot export a model.pt of task {task!r} to the official BEATs layout")

    if weight_norm_keys == "parametrizations":
        out["model"] = to_parametrized_weight_norm(out["model"])
    assert set(OFFICIAL_CLASS_DEFAULTS) - {"layer_wise_gradient_decay_ratio", "finetuned_model", "predictor_dropout", "predictor_class"} <= set(out["cfg"])
    return out
