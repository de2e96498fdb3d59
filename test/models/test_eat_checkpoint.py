"""Official EAT checkpoint layouts: fairseq pre-trained / fine-tuned and Hugging Face, built here with
the official key names and small shapes; strict import, exact round trips, same logits."""
from __future__ import annotations

import dataclasses
import json
import math
import struct
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.models.eat.checkpoint import (
    HF_CODE_REPOS,
    CheckpointMismatch,
    export_official,
    finetune_model_config,
    import_official,
    read_safetensors,
    save_official,
    write_safetensors,
)
from audiossl.models.eat.encoder import EATEncoder
from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel
from audiossl.models.checkpoint import load_model, save_model
from audiossl.tasks.encoder import load_encoder as audiossl_load_encoder

torch.set_num_threads(1)

D, DEPTH, HEADS, HIDDEN, DEC_DIM, DEC_LAYERS, GROUPS = 32, 2, 4, 128, 32, 2, 16
IMG = "modality_encoders.IMAGE."


def sincos_table(num_time: int, num_freq: int, dim: int) -> torch.Tensor:
    """(1, rows, dim) like the official numpy code: frequency half first, float32."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float32) / np.float32(d / 2))
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    t, f = np.divmod(np.arange(num_time * num_freq, dtype=np.int64), num_freq)
    table = np.concatenate([one_d(dim // 2, f.astype(np.float32)), one_d(dim // 2, t.astype(np.float32))], axis=1)
    return torch.from_numpy(table.astype(np.float32))[None]


def official_encoder(g: torch.Generator, patch: str, cls: str, pos: str, norm: str, blocks: str, time_patches: int) -> dict:
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    sd = {f"{patch}weight": r(D, 1, 16, 16), f"{patch}bias": r(D), cls: r(1, 1, D), pos: sincos_table(time_patches, 8, D),
          f"{norm}weight": 1 + 0.1 * r(D), f"{norm}bias": 0.1 * r(D)}
    for i in range(DEPTH):
        b = f"{blocks}{i}."
        sd.update({
            f"{b}norm1.weight": 1 + 0.1 * r(D), f"{b}norm1.bias": 0.1 * r(D),
            f"{b}attn.qkv.weight": 0.1 * r(3 * D, D), f"{b}attn.qkv.bias": 0.1 * r(3 * D),
            f"{b}attn.proj.weight": 0.1 * r(D, D), f"{b}attn.proj.bias": 0.1 * r(D),
            f"{b}norm2.weight": 1 + 0.1 * r(D), f"{b}norm2.bias": 0.1 * r(D),
            f"{b}mlp.fc1.weight": 0.1 * r(HIDDEN, D), f"{b}mlp.fc1.bias": 0.1 * r(HIDDEN),
            f"{b}mlp.fc2.weight": 0.1 * r(D, HIDDEN), f"{b}mlp.fc2.bias": 0.1 * r(D),
        })
    return sd


def fairseq_encoder(g, prefix="", time_patches=64):
    m = f"{prefix}{IMG}"
    return official_encoder(g, f"{m}local_encoder.proj.", f"{m}extra_tokens", f"{m}fixed_positional_encoder.positions",
                            f"{m}context_encoder.norm.", f"{prefix}blocks.", time_patches)


def hf_encoder(g, time_patches=64):
    return official_encoder(g, "model.local_encoder.proj.", "model.extra_tokens", "model.fixed_positional_encoder.positions",
                            "model.pre_norm.", "model.blocks.", time_patches)


def fairseq_pretrained(time_patches=64, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    model = fairseq_encoder(g, time_patches=time_patches)
    for j in range(DEC_LAYERS):
        model[f"{IMG}decoder.blocks.{j}.0.weight"] = torch.randn(DEC_DIM, D // GROUPS, 3, 3, generator=g)
        model[f"{IMG}decoder.blocks.{j}.0.bias"] = torch.randn(DEC_DIM, generator=g)
    model[f"{IMG}decoder.proj.weight"] = torch.randn(D, DEC_DIM, generator=g)
    model[f"{IMG}decoder.proj.bias"] = torch.randn(D, generator=g)
    model["_ema"] = fairseq_encoder(g, time_patches=time_patches)
    cfg = {"model": {"_name": "data2vec_multi", "depth": DEPTH, "num_heads": HEADS, "norm_eps": 1e-6, "clone_batch": 16,
                     "modalities": {"image": {"mask_prob": 0.8, "mask_length": 5, "max_length": time_patches}}}}
    return {"cfg": cfg, "model": model, "optimizer_history": [{"num_updates": 1234}]}


def fairseq_finetuned(num_classes=5, seed=1) -> dict:
    g = torch.Generator().manual_seed(seed)
    model = fairseq_encoder(g, prefix="model.")
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    model.update({"fc_norm.weight": 1 + 0.1 * r(D), "fc_norm.bias": r(D),
                  "head.weight": r(num_classes, D), "head.bias": r(num_classes)})
    cfg = {"model": {"_name": "mae_image_classification", "num_classes": num_classes,
                     "pretrained_model_args": {"model": {"num_heads": HEADS, "norm_eps": 1e-6}}}}
    return {"cfg": cfg, "model": model}


def hf_dir(path, finetuned: bool, num_classes=5, weights="model.safetensors"):
    g = torch.Generator().manual_seed(2)
    sd = hf_encoder(g)
    if finetuned:
        r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
        sd.update({"model.fc_norm.weight": r(D), "model.fc_norm.bias": r(D),
                   "model.head.weight": r(num_classes, D), "model.head.bias": r(num_classes)})
    path.mkdir()
    config = {"model_type": "eat", "embed_dim": D, "depth": DEPTH, "num_heads": HEADS, "patch_size": 16, "mel_bins": 128,
              "max_length": 64, "num_classes": num_classes if finetuned else 0,
              "model_variant": "finetune" if finetuned else "pretrain", "layer_norm_first": False, "norm_eps": 1e-6}
    (path / "config.json").write_text(json.dumps(config))
    if weights.endswith(".safetensors"):
        write_safetensors(sd, path / weights)
    else:
        torch.save(sd, path / weights)
    return sd


def _model_pt(imported) -> dict:
    return {"task": imported.task, "config": {"model": imported.model_config}, "model": imported.state_dict}


def _assert_same_official(a: dict, b: dict, where=""):
    assert set(a) == set(b), f"{where}: {sorted(set(a) ^ set(b))}"
    for k in a:
        if isinstance(a[k], dict):
            _assert_same_official(a[k], b[k], f"{where}{k}.")
        else:  # position tables included: the file's own float32 table goes back as it came
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f"{where}{k}"


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("time_patches", [64, 768])  # 512- and 6144-row position tables
def test_fairseq_pretrained_import_is_strict_and_complete(tmp_path, time_patches):
    ckpt = fairseq_pretrained(time_patches)
    torch.save(ckpt, tmp_path / "checkpoint10.pt")
    imp = import_official(tmp_path / "checkpoint10.pt")
    assert imp.task == "eat_pretrain"
    cfg = EATPretrainConfig(**imp.model_config)
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio) == (D, DEPTH, HEADS, HIDDEN / D)
    decoder = (cfg.decoder_dim, cfg.decoder_layers, cfg.decoder_groups)
    assert decoder == (DEC_DIM, DEC_LAYERS, GROUPS) and cfg.max_time_patches == time_patches
    model = EATPretrainModel(cfg)
    model.load_state_dict(imp.state_dict, strict=True)  # no missing or unexpected keys
    m, ema, sd = ckpt["model"], ckpt["model"]["_ema"], model.state_dict()
    assert torch.equal(sd["encoder.cls_token"], m[f"{IMG}extra_tokens"])
    assert torch.equal(sd["encoder.patch_embed.proj.bias"], m[f"{IMG}local_encoder.proj.bias"])
    assert torch.equal(sd["encoder.norm.weight"], m[f"{IMG}context_encoder.norm.weight"])
    assert torch.equal(sd["encoder.blocks.1.attn.qkv.weight"], m["blocks.1.attn.qkv.weight"])
    assert torch.equal(sd["decoder.blocks.1.0.weight"], m[f"{IMG}decoder.blocks.1.0.weight"])
    assert torch.equal(sd["decoder.proj.bias"], m[f"{IMG}decoder.proj.bias"])
    assert torch.equal(sd["teacher.blocks.0.mlp.fc1.weight"], ema["blocks.0.mlp.fc1.weight"])
    assert torch.equal(sd["teacher.cls_token"], ema[f"{IMG}extra_tokens"])
    assert int(sd["num_updates"]) == 1234 and imp.extra["num_updates"] == 1234


def test_use_teacher_puts_the_ema_weights_in_the_encoder(tmp_path):
    ckpt = fairseq_pretrained()
    torch.save(ckpt, tmp_path / "ckpt.pt")
    imp = import_official(tmp_path / "ckpt.pt", use_teacher=True)
    ema = ckpt["model"]["_ema"]
    assert torch.equal(imp.state_dict["encoder.blocks.1.mlp.fc2.weight"], ema["blocks.1.mlp.fc2.weight"])
    assert torch.equal(imp.state_dict["encoder.cls_token"], ema[f"{IMG}extra_tokens"])
    assert imp.extra["use_teacher"] is True


def test_fairseq_pretrained_round_trip_is_exact(tmp_path):
    ckpt = fairseq_pretrained()
    torch.save(ckpt, tmp_path / "a.pt")
    first = import_official(tmp_path / "a.pt")
    exported = export_official(_model_pt(first), layout="fairseq")
    _assert_same_official(exported["model"], ckpt["model"])
    save_official(exported, tmp_path / "b.pt")
    second = import_official(tmp_path / "b.pt")
    assert second.model_config == first.model_config
    assert set(second.state_dict) == set(first.state_dict)
    assert all(torch.equal(second.state_dict[k], v) for k, v in first.state_dict.items())
    # and through save_model / load_model, as the import stage writes it
    save_model(tmp_path / "model.pt", first.task, {"model": first.model_config}, first.state_dict, first.extra)
    again = export_official(load_model(tmp_path / "model.pt"))
    _assert_same_official(again["model"], ckpt["model"])
    assert first.extra["decoder"] == "imported" and "audiossl_notes" not in again


def test_fairseq_finetuned_import_and_round_trip(tmp_path):
    ckpt = fairseq_finetuned()
    torch.save(ckpt, tmp_path / "ft.pt")
    imp = import_official(tmp_path / "ft.pt")
    assert imp.task == "finetune"
    assert {k.split(".")[0] for k in imp.state_dict} == {"encoder", "head_norm", "head"}
    assert torch.equal(imp.state_dict["head_norm.weight"], ckpt["model"]["fc_norm.weight"])
    assert torch.equal(imp.state_dict["encoder.blocks.0.norm1.bias"], ckpt["model"]["model.blocks.0.norm1.bias"])
    cfg = imp.model_config
    assert (cfg["pooling"], cfg["num_classes"], cfg["head_norm"], cfg["head_norm_eps"]) == ("cls", 5, True, 1e-6)
    encoder = EATEncoder(EATPretrainConfig(**cfg["encoder"]).encoder_config())
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in imp.state_dict.items() if k.startswith("encoder.")})
    assert encoder.cfg.num_heads == HEADS
    exported = export_official(_model_pt(imp), layout="fairseq")
    _assert_same_official(exported["model"], ckpt["model"])
    # the file says how the released model was fed (AudioSet constants, 1024 frames): audio in, scores
    # out, without constants from the user
    assert imp.data_config == {"norm_mean": -4.268, "norm_std": 4.569, "target_frames": 1024}
    imp.save(tmp_path / "exp" / "model.pt")
    import audiossl

    model = audiossl.load_model(tmp_path / "exp" / "model.pt")
    assert (model.norm.mean, model.norm.std, model.window_frames) == (-4.268, 4.569, 1024)
    probs = model.classify(torch.randn(16000) * 0.1, sample_rate=16000).probs
    assert probs.shape == (5,) and bool(((probs > 0) & (probs < 1)).all())


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_hf_finetuned_import_and_round_trip(tmp_path, weights):
    sd = hf_dir(tmp_path / "eat-ft", finetuned=True, weights=weights)
    imp = import_official(tmp_path / "eat-ft")
    assert imp.task == "finetune" and imp.model_config["head_norm_eps"] == 1e-5  # the HF fc_norm
    assert torch.equal(imp.state_dict["encoder.norm.bias"], sd["model.pre_norm.bias"])
    assert torch.equal(imp.state_dict["head.weight"], sd["model.head.weight"])
    exported = export_official(_model_pt(imp), layout="hf")
    _assert_same_official(exported["state_dict"], sd)
    assert exported["config"]["num_heads"] == HEADS and exported["config"]["model_variant"] == "finetune"
    save_official(exported, tmp_path / "again")
    again = import_official(tmp_path / "again")
    assert all(torch.equal(again.state_dict[k], v) for k, v in imp.state_dict.items())


def test_hf_pretrained_gets_a_fresh_decoder_and_a_teacher_copy(tmp_path):
    sd = hf_dir(tmp_path / "eat-pt", finetuned=False)
    imp = import_official(tmp_path / "eat-pt")
    assert imp.task == "eat_pretrain"
    model = EATPretrainModel(EATPretrainConfig(**imp.model_config))
    model.load_state_dict(imp.state_dict, strict=True)
    assert torch.equal(imp.state_dict["encoder.blocks.1.attn.proj.weight"], sd["model.blocks.1.attn.proj.weight"])
    assert torch.equal(imp.state_dict["teacher.blocks.1.attn.proj.weight"], sd["model.blocks.1.attn.proj.weight"])
    # the fresh decoder is no secret: model.pt says so, and so does a fairseq export of it
    assert imp.extra["decoder"].startswith("randomly initialised")
    exported = export_official({**_model_pt(imp), "extra": imp.extra}, layout="fairseq")
    assert exported["audiossl_notes"]["decoder"].startswith("randomly initialised")
    assert any(k.startswith("modality_encoders.IMAGE.decoder.") for k in exported["model"])
    save_official(exported, tmp_path / "exported.pt")
    assert import_official(tmp_path / "exported.pt").extra["decoder"].startswith("randomly initialised")


def _official_forward(sd: dict, feats: torch.Tensor, heads: int, eps: float = 1e-6) -> torch.Tensor:
    """EAT's forward written from the official fairseq key names: conv patches, positions, CLS,
    the context encoder's LayerNorm, post-LN blocks with a fused qkv."""
    B = feats.shape[0]
    x = F.conv2d(feats[:, None], sd[f"{IMG}local_encoder.proj.weight"], sd[f"{IMG}local_encoder.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = x + sd[f"{IMG}fixed_positional_encoder.positions"][:, : x.shape[1]]
    x = torch.cat([sd[f"{IMG}extra_tokens"].expand(B, -1, -1), x], dim=1)
    x = F.layer_norm(x, (D,), sd[f"{IMG}context_encoder.norm.weight"], sd[f"{IMG}context_encoder.norm.bias"], eps)
    L = x.shape[1]
    for i in range(DEPTH):
        p = lambda n: sd[f"blocks.{i}.{n}"]  # noqa: E731
        qkv = (x @ p("attn.qkv.weight").T + p("attn.qkv.bias")).reshape(B, L, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) * (D // heads) ** -0.5, dim=-1)
        a = (att @ qkv[2]).transpose(1, 2).reshape(B, L, D) @ p("attn.proj.weight").T + p("attn.proj.bias")
        x = F.layer_norm(x + a, (D,), p("norm1.weight"), p("norm1.bias"), eps)
        h = F.gelu(x @ p("mlp.fc1.weight").T + p("mlp.fc1.bias")) @ p("mlp.fc2.weight").T + p("mlp.fc2.bias")
        x = F.layer_norm(x + h, (D,), p("norm2.weight"), p("norm2.bias"), eps)
    return x


def test_imported_encoder_computes_what_the_official_keys_describe(tmp_path):
    ckpt = fairseq_pretrained()
    torch.save(ckpt, tmp_path / "ckpt.pt")
    imp = import_official(tmp_path / "ckpt.pt")
    encoder = EATEncoder(EATPretrainConfig(**imp.model_config).encoder_config()).eval()
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in imp.state_dict.items() if k.startswith("encoder.")})
    feats = torch.randn(2, 96, 128)
    out = encoder(feats)
    ref = _official_forward(ckpt["model"], feats, HEADS)
    torch.testing.assert_close(out.cls, ref[:, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.tokens, ref[:, 1:], atol=1e-4, rtol=1e-4)


class _ClsHead(nn.Module):
    """Minimal fine-tuned EAT: CLS -> LayerNorm -> Linear, named as our classifier names them."""

    def __init__(self, encoder: EATEncoder, num_classes: int, eps: float):
        super().__init__()
        self.encoder = encoder
        self.head_norm = nn.LayerNorm(encoder.embed_dim, eps=eps)
        self.head = nn.Linear(encoder.embed_dim, num_classes)

    def forward(self, feats):
        return self.head(self.head_norm(self.encoder(feats).cls))


@pytest.mark.parametrize("layout,eps", [("fairseq", 1e-6), ("hf", 1e-5)])
def test_finetuned_export_then_import_gives_the_same_logits(tmp_path, layout, eps):
    torch.manual_seed(0)
    enc_cfg = EATPretrainConfig(embed_dim=D, depth=DEPTH, num_heads=HEADS, average_top_k_layers=DEPTH, max_time_patches=64)
    model = _ClsHead(EATEncoder(enc_cfg.encoder_config()), 7, eps).eval()
    with torch.no_grad():
        model.head_norm.weight.normal_(1.0, 0.1)
        model.head.weight.normal_(0.0, 0.5)
    model_pt = {"task": "finetune", "config": {"model": finetune_model_config(enc_cfg, 7, head_norm_eps=eps)},
                "model": model.state_dict()}
    target = tmp_path / ("ft.pt" if layout == "fairseq" else "ft_hf")
    save_official(export_official(model_pt, layout=layout), target)
    imp = import_official(target)
    cfg = imp.model_config
    rebuilt = _ClsHead(EATEncoder(EATPretrainConfig(**cfg["encoder"]).encoder_config()), cfg["num_classes"],
                       cfg["head_norm_eps"]).eval()
    rebuilt.load_state_dict(imp.state_dict, strict=True)
    feats = torch.randn(3, 64, 128)
    with torch.no_grad():
        assert torch.equal(rebuilt(feats), model(feats))


def test_mismatched_keys_are_listed(tmp_path):
    ckpt = fairseq_pretrained()
    del ckpt["model"]["blocks.1.mlp.fc2.bias"]
    ckpt["model"]["blocks.0.attn.rel_pos_bias"] = torch.zeros(3)
    ckpt["model"]["_ema"]["blocks.0.norm1.weight"] = torch.zeros(D + 1)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatch) as err:
        import_official(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "bad.pt" in msg
    assert "encoder.blocks.1.mlp.fc2.bias" in msg and "missing" in msg
    assert "blocks.0.attn.rel_pos_bias" in msg and "unexpected" in msg
    assert "teacher.blocks.0.norm1.weight" in msg and "shape mismatch" in msg


def _nonstandard(table: torch.Tensor, seed: int) -> torch.Tensor:
    """The official table with its halves swapped and a little noise: far from the sin-cos formula."""
    noise = torch.randn(table.shape, generator=torch.Generator().manual_seed(seed)) * 1e-3
    return torch.cat([table[..., D // 2:], table[..., : D // 2]], -1) + noise


@pytest.mark.parametrize("kind", ["fairseq_pretrained", "fairseq_finetuned", "hf_pretrained", "hf_finetuned"])
def test_nonstandard_position_table_is_kept_and_round_trips_bit_exact(tmp_path, kind, caplog):
    pos = f"{IMG}fixed_positional_encoder.positions"
    if kind.startswith("fairseq"):
        ckpt = fairseq_pretrained() if kind == "fairseq_pretrained" else fairseq_finetuned()
        key = pos if kind == "fairseq_pretrained" else "model." + pos
        ckpt["model"][key] = _nonstandard(ckpt["model"][key], 1)
        if "_ema" in ckpt["model"]:
            ckpt["model"]["_ema"][pos] = _nonstandard(ckpt["model"]["_ema"][pos], 2)
        torch.save(ckpt, tmp_path / "odd.pt")
        source, theirs = tmp_path / "odd.pt", ckpt["model"]
    else:
        sd = hf_dir(tmp_path / "odd", finetuned=kind == "hf_finetuned")
        key = "model.fixed_positional_encoder.positions"
        sd[key] = _nonstandard(sd[key], 3)
        write_safetensors(sd, tmp_path / "odd" / "model.safetensors")
        source, theirs = tmp_path / "odd", sd
    layout = kind.split("_")[0]

    with caplog.at_level("WARNING"):
        first = import_official(source)
    assert "position table differs from the fixed 2-D sin-cos table" in caplog.text
    assert torch.equal(first.state_dict["encoder.pos_embed"], theirs[key].reshape(-1, D))  # kept as stored
    # import -> model.pt -> export gives back the file's tensors bit for bit ...
    first.save(tmp_path / "model.pt")
    exported = export_official(load_model(tmp_path / "model.pt"), layout=layout)
    ours = exported["model"] if layout == "fairseq" else exported["state_dict"]
    if kind == "hf_pretrained":  # an HF pre-trained file has neither decoder nor teacher to give back
        _assert_same_official(ours, theirs)
    else:
        _assert_same_official({k: v for k, v in ours.items() if not k.startswith(f"{IMG}decoder.")},
                              {k: v for k, v in theirs.items() if not k.startswith(f"{IMG}decoder.")})
    # ... and a second import is the first one again
    save_official(exported, tmp_path / ("again.pt" if layout == "fairseq" else "again"))
    second = import_official(tmp_path / ("again.pt" if layout == "fairseq" else "again"))
    assert set(second.state_dict) == set(first.state_dict)
    fresh = ("decoder.",) if kind == "hf_pretrained" else ()  # a decoder made at import, anew each time
    assert all(torch.equal(second.state_dict[k], v) for k, v in first.state_dict.items() if not k.startswith(fresh or "-"))
    # the model computes with the stored table, as the official code would with this file
    encoder = audiossl_load_encoder(tmp_path / "model.pt")
    feats = torch.randn(2, 64, 128)
    x = encoder.embed_patches(feats)
    ref = encoder.patch_embed(feats) + theirs[key].reshape(-1, D)[: x.shape[1]]
    assert torch.equal(x, ref)


def test_old_model_pt_without_the_position_table_still_loads_strictly(tmp_path):
    torch.save(fairseq_pretrained(), tmp_path / "ckpt.pt")
    imp = import_official(tmp_path / "ckpt.pt")
    old = {k: v for k, v in imp.state_dict.items() if not k.endswith("pos_embed")}  # as model.pt files were written
    save_model(tmp_path / "old.pt", imp.task, {"model": imp.model_config}, old, imp.extra)
    encoder = audiossl_load_encoder(tmp_path / "old.pt")
    assert torch.equal(encoder.pos_embed, encoder.standard_positions())
    exported = export_official(load_model(tmp_path / "old.pt"))
    table = exported["model"][f"{IMG}fixed_positional_encoder.positions"]
    assert table.shape == (1, 64 * 8, D)
    torch.testing.assert_close(table, sincos_table(64, 8, D), atol=1e-4, rtol=0)  # the formula, as before


def test_wrong_layout_is_refused(tmp_path):
    torch.save(fairseq_pretrained(), tmp_path / "ok.pt")
    with pytest.raises(CheckpointMismatch, match="layout"):
        import_official(tmp_path / "ok.pt", layout="hf")


@pytest.mark.parametrize("finetuned", [False, True])
def test_hf_export_config_loads_like_the_released_ones(tmp_path, finetuned):
    sd = hf_dir(tmp_path / "eat", finetuned=finetuned)
    exported = export_official(_model_pt(import_official(tmp_path / "eat")), layout="hf")
    config = exported["config"]
    variant = "finetune" if finetuned else "pretrain"
    repo = HF_CODE_REPOS[variant]
    assert config["architectures"] == ["EATModel"] and config["model_type"] == "eat"
    assert config["auto_map"] == {"AutoConfig": f"{repo}--configuration_eat.EATConfig",
                                  "AutoModel": f"{repo}--modeling_eat.EATModel"}
    assert config["model_variant"] == variant
    assert config["num_classes"] == (5 if finetuned else 527)  # a pre-trained one says 527, as released
    assert (config["embed_dim"], config["depth"], config["num_heads"], config["max_length"]) == (D, DEPTH, HEADS, 64)
    assert config["img_size"] == [1024, 128] and config["stride"] == config["patch_size"] == 16
    other = export_official(_model_pt(import_official(tmp_path / "eat")), layout="hf", hf_code_repo="me/eat-code")
    assert other["config"]["auto_map"]["AutoModel"] == "me/eat-code--modeling_eat.EATModel"
    assert sorted(sd) == sorted(exported["state_dict"])


STANDIN = '''
import enum

class Modality(enum.Enum):
    AUDIO = 1
    IMAGE = 2

class AnyNode:
    def __init__(self, val):
        self._val = val
        self._metadata = {"ref_type": "Any"}

class DictConfig:
    def __init__(self, content):
        self._content = {k: v if isinstance(v, DictConfig) else AnyNode(v) for k, v in content.items()}
        self._metadata = {"object_type": dict}
'''


def test_fairseq_config_pickled_with_classes_we_do_not_have(tmp_path, monkeypatch):
    """fairseq checkpoints pickle omegaconf objects: read them without the package installed."""
    (tmp_path / "cfgstandin.py").write_text(STANDIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import cfgstandin

    ckpt = fairseq_pretrained()
    ckpt["cfg"] = cfgstandin.DictConfig({"model": cfgstandin.DictConfig({
        "num_heads": 8, "norm_eps": 1e-5, "supported_modality": cfgstandin.Modality.IMAGE,
        "modalities": cfgstandin.DictConfig({"image": cfgstandin.DictConfig({"mask_length": 3})}),
    })})
    torch.save(ckpt, tmp_path / "omega.pt")
    monkeypatch.delitem(sys.modules, "cfgstandin")
    (tmp_path / "cfgstandin.py").unlink()
    imp = import_official(tmp_path / "omega.pt")
    assert imp.model_config["num_heads"] == 8  # not the 64-dim-head guess (32 / 64 -> 1)
    assert imp.model_config["norm_eps"] == 1e-5 and imp.model_config["mask_length"] == 3


def test_safetensors_reader_on_a_hand_built_file(tmp_path):
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([1, -2], dtype="<i8")
    header = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}, "__metadata__": {"format": "pt"}}
    blob = json.dumps(header).encode()
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + a.tobytes() + b.tobytes())
    got = read_safetensors(tmp_path / "x.safetensors")
    assert torch.equal(got["a"], torch.from_numpy(a)) and torch.equal(got["b"], torch.from_numpy(b))
    tensors = {"w": torch.randn(3, 4).to(torch.bfloat16), "e": torch.zeros(0), "i": torch.tensor([True, False])}
    write_safetensors(tensors, tmp_path / "y.safetensors")
    back = read_safetensors(tmp_path / "y.safetensors")
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())


def test_export_refuses_other_models():
    with pytest.raises(ValueError, match="finetune"):
        export_official({"task": "finetune", "config": {"model": {"encoder_task": "beats_ssl", "encoder": {}}}, "model": {}})
    assert math.isclose(dataclasses.asdict(EATPretrainConfig())["mask_prob"], 0.8)
