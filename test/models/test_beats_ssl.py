"""BEATs masked label prediction: masking, visible positions, training signal, state-dict layout."""
from __future__ import annotations

import dataclasses

import torch

from audiossl.models.beats.ssl import random_token_mask
from audiossl.data.dataset import DataInfo
from audiossl.tasks.beats_ssl import BeatsSSLTask
from audiossl.tasks.beats_tokenizer import BeatsTokenizerTask
from audiossl.models.checkpoint import save_model

torch.set_num_threads(1)

TINY = dict(
    encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4, embed_dim=32,
    conv_pos=16, conv_pos_groups=4, num_buckets=32, max_distance=64, encoder_layerdrop=0.0,
    dropout=0.0, attention_dropout=0.0, layer_wise_gradient_decay_ratio=1.0,
)


def build(tmp_path, codebook_size=64, **ssl_kw):
    torch.manual_seed(0)
    rt = BeatsTokenizerTask.ModelConfig(kind="random", codebook_size=codebook_size, codebook_dim=16)
    rmodel = BeatsTokenizerTask.build_model(rt, DataInfo())
    path = tmp_path / "tok_r1.pt"
    save_model(path, "beats_tokenizer", {"model": dataclasses.asdict(rt)}, rmodel.state_dict())
    kw = dict(encoder=dict(TINY), tokenizer=str(path), predictor_layers=1, label_smoothing=0.0)
    cfg = BeatsSSLTask.ModelConfig(**{**kw, **ssl_kw})
    return cfg, BeatsSSLTask.build_model(cfg, DataInfo())


def test_random_token_mask_keeps_a_quarter_in_order_and_masks_padding_first():
    torch.manual_seed(0)
    pad = torch.zeros(3, 32, dtype=torch.bool)
    pad[1, 20:] = True  # 20 real tokens >= 8 kept
    pad[2, 4:] = True  # only 4 real tokens: all kept, plus 4 padded ones
    keep, masked = random_token_mask(3, 32, 0.75, pad, "cpu")
    assert keep.shape == (3, 8) and masked.sum(1).tolist() == [24, 24, 24]
    assert (keep[:, 1:] > keep[:, :-1]).all()
    assert (keep[1] < 20).all()
    assert set(range(4)) <= set(keep[2].tolist())
    for b in range(3):
        assert not masked[b, keep[b]].any()
    keep2, _ = random_token_mask(3, 32, 0.75, None, "cpu")
    assert not torch.equal(keep, keep2)  # a fresh draw each call


def test_visible_tokens_go_through_the_encoder_with_their_original_positions(tmp_path, monkeypatch):
    cfg, model = build(tmp_path)
    seen = {}
    original = model.encoder.encode_tokens

    def spy(x, token_mask=None, positions=None, output_hidden_states=False):
        seen["x"], seen["positions"] = x, positions
        return original(x, token_mask, positions, output_hidden_states)

    monkeypatch.setattr(model.encoder, "encode_tokens", spy)
    feats = torch.randn(2, 64, 128)
    model({"feats": feats, "padding_mask": None})
    pos = seen["positions"]
    assert pos.shape == (2, 8) and (pos[:, 1:] > pos[:, :-1]).all()
    # the visible embeddings are exactly the patch embeddings at those positions
    with torch.no_grad():
        full, _ = model.encoder.patch_embed(feats)
    torch.testing.assert_close(seen["x"], full.gather(1, pos[:, :, None].expand(-1, -1, 64)))



def test_compressed_positions_run_the_visible_tokens_as_a_contiguous_sequence(tmp_path, monkeypatch):
    """visible_positions: compressed (OpenBEATs) gives the encoder no positions, so its relative
    bias sees 0..K-1; the loss then differs from the default's on the same masks."""
    losses = {}
    for mode in ("original", "compressed"):
        cfg, model = build(tmp_path, visible_positions=mode)
        seen = {}
        original = model.encoder.encode_tokens

        def spy(x, token_mask=None, positions=None, output_hidden_states=False, _orig=original, _seen=seen):
            _seen["positions"] = positions
            return _orig(x, token_mask, positions, output_hidden_states)

        monkeypatch.setattr(model.encoder, "encode_tokens", spy)
        torch.manual_seed(1)  # the same masks in both modes
        losses[mode] = model({"feats": torch.randn(2, 64, 128), "padding_mask": None})[0].item()
        assert (seen["positions"] is None) == (mode == "compressed")
    assert losses["original"] != losses["compressed"]

def test_a_few_steps_lower_the_loss(tmp_path):
    cfg, model = build(tmp_path, label_smoothing=0.1)
    feats = torch.randn(4, 64, 128)
    pad = torch.zeros(4, 64, dtype=torch.bool)
    pad[3, 40:] = True
    batch = {"feats": feats, "padding_mask": pad}
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(15):
        loss, stats, weight = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert weight == 4 and set(stats) == {"loss", "acc"}
    # fresh masks every step; the loss still falls clearly (label statistics, then the clip itself)
    assert sum(losses[-3:]) / 3 < 0.93 * sum(losses[:3]) / 3, losses
    # the tokenizer is frozen and lives outside the state dict and the optimiser
    assert {k.split(".")[0] for k in model.state_dict()} == {"encoder", "predictor"}
    assert not any(p.requires_grad for p in model.tokenizer.parameters())
    assert model.find_unused_parameters is False


def test_masked_accuracy_beats_chance_on_a_learnable_signal(tmp_path):
    """Each clip repeats one of 4 class patterns along time (one pattern per frequency band): the label
    of a masked patch is the label of the visible patches of the same band."""
    cfg, model = build(tmp_path)
    g = torch.Generator().manual_seed(1)
    protos = torch.randn(4, 8, 16, 16, generator=g)  # class, frequency band, patch

    def batch(B, gen):
        c = torch.randint(0, 4, (B,), generator=gen)
        x = protos[c].permute(0, 2, 1, 3).reshape(B, 16, 128).repeat(1, 4, 1)  # (B, 64 frames, 128)
        return {"feats": x + 0.3 * torch.randn(x.shape, generator=gen), "padding_mask": None}

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(40):
        loss, _, _ = model(batch(16, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = batch(64, torch.Generator().manual_seed(9))
    with torch.no_grad():
        labels = model.tokenizer.tokenize(test["feats"])
        majority = torch.bincount(labels.flatten()).max().item() / labels.numel()
        _, stats, _ = model(test)
    assert stats["acc"].item() > max(0.3, 3 * majority), (stats["acc"].item(), majority)
    # validation draws the same masks every time: identical numbers for identical weights
    with torch.no_grad():
        _, again, _ = model(test)
    assert torch.equal(stats["loss"], again["loss"]) and torch.equal(stats["acc"], again["acc"])


def test_build_encoder_matches_the_saved_encoder_keys(tmp_path):
    cfg, model = build(tmp_path, encoder={**TINY, "encoder_layerdrop": 0.1})
    assert model.find_unused_parameters is True
    enc = BeatsSSLTask.build_encoder(cfg)
    own = {k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    enc.load_state_dict(own, strict=True)
    assert enc.num_layers == 2 and enc.embed_dim == 64
    names = model.no_weight_decay()
    assert "predictor.mask_token" in names and "encoder.encoder.layers.0.self_attn.grep_a" in names
