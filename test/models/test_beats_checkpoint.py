"""Official BEATs checkpoints <-> model.pt: key checking, round trips, weight-norm names, fine-tuned heads,
tokenizers. The "official" files are built here from the key names and shapes of the design notes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audiossl.models.beats.checkpoint import export_official, import_official
from audiossl.tasks.encoder import load_encoder
from audiossl.tasks.beats_tokenizer import load_tokenizer
from audiossl.models.checkpoint import load_model, save_model

torch.set_num_threads(1)

L, E, D, FFN, H, K, G, NB = 2, 32, 64, 128, 4, 16, 4, 32
OFFICIAL_CFG = {
    "input_patch_size": 16, "embed_dim": E, "conv_bias": False, "encoder_layers": L, "encoder_embed_dim": D,
    "encoder_ffn_embed_dim": FFN, "encoder_attention_heads": H, "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 0.6, "layer_norm_first": False, "deep_norm": True, "dropout": 0.0,
    "attention_dropout": 0.0, "activation_dropout": 0.0, "encoder_layerdrop": 0.05, "dropout_input": 0.0,
    "conv_pos": K, "conv_pos_groups": G, "relative_position_embedding": True, "num_buckets": NB,
    "max_distance": 64, "gru_rel_pos": True, "finetuned_model": False, "predictor_dropout": 0.0,
    "predictor_class": 527,
}


def official_backbone_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {
        "patch_embedding.weight": (E, 1, 16, 16),
        "layer_norm.weight": (E,), "layer_norm.bias": (E,),
        "post_extract_proj.weight": (D, E), "post_extract_proj.bias": (D,),
        "encoder.pos_conv.0.weight_g": (1, 1, K), "encoder.pos_conv.0.weight_v": (D, D // G, K),
        "encoder.pos_conv.0.bias": (D,),
        "encoder.layer_norm.weight": (D,), "encoder.layer_norm.bias": (D,),
    }
    for i in range(L):
        p = f"encoder.layers.{i}."
        for proj in ("q", "k", "v", "out"):
            shapes[f"{p}self_attn.{proj}_proj.weight"] = (D, D)
            shapes[f"{p}self_attn.{proj}_proj.bias"] = (D,)
        shapes[f"{p}self_attn.grep_linear.weight"] = (8, D // H)
        shapes[f"{p}self_attn.grep_linear.bias"] = (8,)
        shapes[f"{p}self_attn.grep_a"] = (1, H, 1, 1)
        shapes[f"{p}self_attn.relative_attention_bias.weight"] = (NB, H)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[f"{p}{ln}.weight"] = (D,)
            shapes[f"{p}{ln}.bias"] = (D,)
        shapes[f"{p}fc1.weight"], shapes[f"{p}fc1.bias"] = (FFN, D), (FFN,)
        shapes[f"{p}fc2.weight"], shapes[f"{p}fc2.bias"] = (D, FFN), (D,)
    return shapes


def official_checkpoint(kind: str = "pretrained", num_classes: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    model = {k: torch.randn(s, generator=g) * 0.1 for k, s in official_backbone_shapes().items()}
    model["encoder.pos_conv.0.weight_g"] = torch.rand(1, 1, K, generator=g) + 0.5
    shared = torch.randn(NB, H, generator=g)
    for i in range(L):
        model[f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = shared.clone()
    cfg = dict(OFFICIAL_CFG)
    out = {"cfg": cfg, "model": model}
    if kind == "finetuned":
        cfg.update(finetuned_model=True, predictor_class=num_classes)
        model["predictor.weight"] = torch.randn(num_classes, D, generator=g)
        model["predictor.bias"] = torch.randn(num_classes, generator=g)
        out["label_dict"] = {i: f"/m/{i:04d}" for i in range(num_classes)}
    if kind == "tokenizer":
        for key in ("layer_wise_gradient_decay_ratio", "finetuned_model", "predictor_dropout", "predictor_class"):
            cfg.pop(key)
        cfg.update(quant_n=24, quant_dim=8)
        model["quantize_layer.0.weight"] = torch.randn(D, D, generator=g) * 0.2
        model["quantize_layer.0.bias"] = torch.randn(D, generator=g) * 0.1
        model["quantize_layer.2.weight"] = torch.randn(8, D, generator=g) * 0.2
        model["quantize_layer.2.bias"] = torch.randn(8, generator=g) * 0.1
        codebook = F.normalize(torch.randn(24, 8, generator=g), dim=-1)
        model["quantize.embedding.weight"] = codebook
        model["quantize.embedding.cluster_size"] = torch.rand(24, generator=g)
        model["quantize.embedding.embed_avg"] = codebook.clone()
        model["quantize.embedding.initted"] = torch.tensor([1.0])
        model["quantize.cluster_size"] = torch.rand(24, generator=g)
    return out


def save_imported(imported, path):
    save_model(path, imported.task, imported.config(), imported.state_dict, imported.extra)
    return path


def test_pretrained_loads_with_no_missing_or_unexpected_keys(tmp_path):
    official = official_checkpoint()
    imp = import_official(official)
    assert imp.task == "beats_ssl"
    assert set(imp.state_dict) == {f"encoder.{k}" for k in official["model"]}
    encoder = load_encoder(save_imported(imp, tmp_path / "model.pt"))
    assert encoder.cfg.max_distance == 64 and encoder.cfg.layer_wise_gradient_decay_ratio == 0.6
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, official["model"][k]), k


def test_import_lists_missing_unexpected_and_mismatched_keys(tmp_path):
    official = official_checkpoint()
    del official["model"]["encoder.layers.1.fc2.bias"]
    official["model"]["encoder.layers.0.extra.weight"] = torch.zeros(3)
    official["model"]["encoder.layers.0.fc1.weight"] = torch.zeros(FFN + 1, D)
    path = tmp_path / "BEATs_iter3.pt"
    torch.save(official, path)
    with pytest.raises(ValueError) as err:
        import_official(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing in the file (1): encoder.layers.1.fc2.bias" in msg
    assert "unexpected in the file (1): encoder.layers.0.extra.weight" in msg
    assert f"shape mismatch: encoder.layers.0.fc1.weight: file ({FFN + 1}, {D}), model ({FFN}, {D})" in msg


def test_save_load_export_round_trip_is_exact(tmp_path):
    official = official_checkpoint()
    path = save_imported(import_official(official), tmp_path / "model.pt")
    back = export_official(load_model(path))
    assert set(back["model"]) == set(official["model"])
    for k, v in official["model"].items():
        assert torch.equal(back["model"][k], v), k
    assert back["cfg"] == official["cfg"]


def test_parametrizations_weight_norm_names_map_both_ways(tmp_path):
    official = official_checkpoint()
    renamed = dict(official["model"])
    renamed["encoder.pos_conv.0.parametrizations.weight.original0"] = renamed.pop("encoder.pos_conv.0.weight_g")
    renamed["encoder.pos_conv.0.parametrizations.weight.original1"] = renamed.pop("encoder.pos_conv.0.weight_v")
    imp = import_official({"cfg": official["cfg"], "model": renamed})
    assert torch.equal(imp.state_dict["encoder.encoder.pos_conv.0.weight_g"], official["model"]["encoder.pos_conv.0.weight_g"])
    assert torch.equal(imp.state_dict["encoder.encoder.pos_conv.0.weight_v"], official["model"]["encoder.pos_conv.0.weight_v"])
    path = save_imported(imp, tmp_path / "model.pt")
    back = export_official(load_model(path), weight_norm_keys="parametrizations")
    assert "encoder.pos_conv.0.parametrizations.weight.original0" in back["model"]
    assert "encoder.pos_conv.0.weight_g" not in back["model"]


def test_finetuned_head_is_mean_pooling_then_linear(tmp_path):
    from audiossl.tasks.finetune import load_finetuned

    official = official_checkpoint("finetuned", num_classes=5)
    imp = import_official(official)
    assert imp.task == "finetune"
    assert torch.equal(imp.state_dict["head.weight"], official["model"]["predictor.weight"])
    assert imp.extra["label_names"] == [f"/m/{i:04d}" for i in range(5)]
    path = save_imported(imp, tmp_path / "model.pt")
    clf = load_finetuned(path)

    feats = torch.randn(2, 80, 128)
    pad = torch.zeros(2, 80, dtype=torch.bool)
    pad[1, 44:] = True
    with torch.no_grad():
        out = clf.encoder(feats, pad)
        # the official head: per-patch Linear, padded logits zeroed, mean over the others, sigmoid
        per_patch = F.linear(out.tokens, official["model"]["predictor.weight"], official["model"]["predictor.bias"])
        per_patch = per_patch.masked_fill(out.padding_mask[:, :, None], 0.0)
        official_probs = torch.sigmoid(per_patch.sum(1) / (~out.padding_mask).sum(1, keepdim=True))
        ours = torch.sigmoid(clf.logits(feats, pad))
    torch.testing.assert_close(ours, official_probs, rtol=1e-5, atol=1e-6)

    back = export_official(load_model(path))
    assert torch.equal(back["model"]["predictor.bias"], official["model"]["predictor.bias"])
    assert back["label_dict"] == official["label_dict"]
    assert back["cfg"]["finetuned_model"] is True and back["cfg"]["predictor_class"] == 5


def test_official_tokenizer_imports_and_tokenizes(tmp_path):
    official = official_checkpoint("tokenizer")
    imp = import_official(official)
    assert imp.task == "beats_tokenizer" and imp.model_config["codebook_size"] == 24
    path = save_imported(imp, tmp_path / "model.pt")
    tok = load_tokenizer(path)
    feats = torch.randn(3, 48, 128)
    codes = tok.tokenize(feats)
    # by hand: quantize_layer (Linear, Tanh, Linear) on the encoder output, nearest unit code by cosine
    m = official["model"]
    with torch.no_grad():
        x = load_encoder(path)(feats).tokens
        z = F.linear(torch.tanh(F.linear(x, m["quantize_layer.0.weight"], m["quantize_layer.0.bias"])),
                     m["quantize_layer.2.weight"], m["quantize_layer.2.bias"])
        expect = (F.normalize(z, dim=-1) @ m["quantize.embedding.weight"].t()).argmax(-1)
    assert codes.shape == (3, 24) and torch.equal(codes, expect)
    back = export_official(load_model(path))
    assert set(back["model"]) == set(m) and back["cfg"]["quant_n"] == 24 and back["cfg"]["quant_dim"] == 8
    assert torch.equal(back["model"]["quantize.cluster_size"], m["quantize.cluster_size"])


def test_kind_detection_and_bad_files(tmp_path):
    assert import_official(official_checkpoint("tokenizer"), kind="auto").task == "beats_tokenizer"
    with pytest.raises(ValueError, match="no 'cfg' entry"):
        import_official({"model": {}})
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        import_official(tmp_path / "nothing.pt")
