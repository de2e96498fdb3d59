"""BEATs tokenizers: EMA cosine quantiser, random-projection tokenizer, self-distilled tokenizer training."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from audiossl.models.beats.quantizer import NormEMAQuantizer, spherical_kmeans
from audiossl.models.beats.tokenizer import RandomProjectionTokenizer, TokenizerConfig
from audiossl.data.dataset import DataInfo
from audiossl.tasks.beats_ssl import BeatsSSLTask
from audiossl.tasks.beats_tokenizer import BeatsTokenizerTask, load_tokenizer
from audiossl.models.checkpoint import save_model

torch.set_num_threads(1)

TINY = dict(
    encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4, embed_dim=32,
    conv_pos=16, conv_pos_groups=4, num_buckets=32, max_distance=64, encoder_layerdrop=0.0,
    dropout=0.0, attention_dropout=0.0,
)


def clustered(num_clusters=4, per=50, dim=8, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_clusters, dim, generator=g), dim=-1)
    x = centres.repeat_interleave(per, 0) + noise * torch.randn(num_clusters * per, dim, generator=g)
    return centres, F.normalize(x, dim=-1)


# --- quantiser ----------------------------------------------------------------------------------
def test_kmeans_init_finds_the_data_clusters():
    torch.manual_seed(0)
    centres, x = clustered()
    q = NormEMAQuantizer(num_codes=4, dim=8, kmeans_iters=10).train()
    assert not q.initialised
    q(x[None])  # first batch: k-means on it
    assert q.initialised
    sim = centres @ q.codebook.t()  # (4 true centres, 4 codes)
    assert (sim.max(dim=1).values > 0.99).all(), sim
    assert sorted(sim.argmax(dim=1).tolist()) == [0, 1, 2, 3]  # one code per cluster
    assert torch.equal(q.embedding.cluster_size, torch.full((4,), 50.0))


def test_codebook_stays_unit_norm_and_out_of_the_optimiser():
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=16, dim=8).train()
    assert list(q.parameters()) == []
    for _ in range(20):
        q(torch.randn(4, 10, 8) * 3 + 1)
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(16))
    # under bf16 autocast the codebook and its arithmetic stay fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(torch.randn(2, 10, 8).bfloat16())
    assert q.codebook.dtype == torch.float32 and out.z_q.dtype == torch.float32
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(16))


def test_ema_step_by_hand_and_unused_codes_keep_theirs():
    q = NormEMAQuantizer(num_codes=3, dim=2, decay=0.9, kmeans_init=False).train()
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    q.embedding.weight.copy_(codebook)
    z = torch.tensor([[[1.0, 0.2], [1.0, -0.1], [0.1, 1.0]]])  # two vectors near code 0, one near code 1
    out = q(z)
    assert out.codes.tolist() == [[0, 0, 1]]
    zn = F.normalize(z[0], dim=-1)
    new0 = F.normalize(0.9 * codebook[0] + 0.1 * F.normalize((zn[0] + zn[1]) / 2, dim=0), dim=0)
    new1 = F.normalize(0.9 * codebook[1] + 0.1 * zn[2], dim=0)
    torch.testing.assert_close(q.codebook[0], new0)
    torch.testing.assert_close(q.codebook[1], new1)
    assert torch.equal(q.codebook[2], codebook[2])
    torch.testing.assert_close(q.cluster_size, torch.tensor([0.2, 0.1, 0.0]))
    # straight-through: gradients reach z unchanged in direction
    z.requires_grad_(True)
    q.eval()
    (q(z).z_q.sum() + 0).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_padded_vectors_do_not_vote_and_eval_does_not_update():
    q = NormEMAQuantizer(num_codes=2, dim=2, decay=0.5, kmeans_init=False).train()
    q.embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    pad = torch.tensor([[False, True]])
    q(z, pad)
    assert q.cluster_size.tolist() == [0.5, 0.0]
    frozen = q.codebook.clone()
    q.eval()
    q(torch.randn(1, 5, 2))
    assert torch.equal(q.codebook, frozen)


def test_dead_codes_restart_on_data():
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=4, dim=2, decay=0.5, kmeans_init=False, dead_code_threshold=0.5).train()
    far = torch.tensor([[-1.0, 0.0], [0.0, -1.0], [-0.7, -0.7]])
    q.embedding.weight.copy_(torch.cat([torch.tensor([[1.0, 0.0]]), F.normalize(far, dim=-1)]))
    data = F.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.3], [0.9, 0.5], [1.0, 0.2]]), dim=-1)[None]
    q(data)  # every vector goes to code 0; codes 1..3 are dead and move onto data vectors
    moved = q.codebook[1:]
    assert ((moved @ data[0].t()).max(dim=1).values > 0.999).all()


def test_spherical_kmeans_empty_cluster_keeps_its_centre():
    x = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01]]), dim=-1)
    means, counts = spherical_kmeans(x, num_clusters=3, num_iters=3, generator=torch.Generator().manual_seed(0))
    assert counts.sum() == 2 and means.shape == (3, 2)
    torch.testing.assert_close(means.norm(dim=-1), torch.ones(3))


# --- random projection ------------------------------------------------------------------------
def test_random_tokenizer_patches_are_the_backbone_grid():
    tok = RandomProjectionTokenizer(patch_size=16, codebook_size=32, codebook_dim=16)
    feats = torch.zeros(1, 40, 128)  # 2 full time steps, 8 trailing frames dropped
    for t in range(2):
        for f in range(8):
            feats[0, 16 * t : 16 * t + 16, 16 * f : 16 * f + 16] = 10 * t + f
    patches = tok.patches(feats)
    assert patches.shape == (1, 16, 256)
    assert [int(p[0]) for p in patches[0]] == [10 * (n // 8) + n % 8 for n in range(16)]
    # within a patch: (time, freq) row-major
    feats = torch.arange(16 * 128, dtype=torch.float32).view(1, 16, 128)
    assert torch.equal(tok.patches(feats)[0, 0], feats[0, :16, :16].reshape(-1))


def test_random_tokenizer_is_deterministic_and_uses_cosine():
    a = RandomProjectionTokenizer(codebook_size=64, codebook_dim=16, seed=3)
    b = RandomProjectionTokenizer(codebook_size=64, codebook_dim=16, seed=3)
    c = RandomProjectionTokenizer(codebook_size=64, codebook_dim=16, seed=4)
    x = torch.randn(2, 64, 128)
    assert torch.equal(a.tokenize(x), b.tokenize(x))
    assert not torch.equal(a.projection, c.projection)
    assert torch.equal(a.tokenize(x), a.tokenize(3.0 * x))  # scale-free: cosine on the projection
    assert a.tokenize(x).shape == (2, 32) and a.tokenize(x).max() < 64


# --- self-distilled tokenizer ---------------------------------------------------------------------
def make_teacher(path, seed=0):
    """A tiny beats_ssl model.pt to distil from (random tokenizer underneath)."""
    torch.manual_seed(seed)
    rt = BeatsTokenizerTask.ModelConfig(kind="random", codebook_size=16, codebook_dim=8)
    rmodel = BeatsTokenizerTask.build_model(rt, DataInfo())
    tok_path = path.parent / "tok_r1.pt"
    save_model(tok_path, "beats_tokenizer", {"model": dataclasses.asdict(rt)}, rmodel.state_dict())
    cfg = BeatsSSLTask.ModelConfig(encoder=dict(TINY), tokenizer=str(tok_path), predictor_layers=1)
    ssl = BeatsSSLTask.build_model(cfg, DataInfo())
    save_model(path, "beats_ssl", {"model": dataclasses.asdict(cfg)}, ssl.state_dict())
    return path


def test_distilled_tokenizer_trains_and_labels_are_stable(tmp_path):
    teacher = make_teacher(tmp_path / "ssl_r1.pt")
    cfg = TokenizerConfig(kind="distilled", codebook_size=16, codebook_dim=8, encoder=dict(TINY),
                          estimator_layers=1, teacher=str(teacher))
    torch.manual_seed(0)
    model = BeatsTokenizerTask.build_model(cfg, DataInfo())
    keys = model.state_dict().keys()
    assert not any(k.startswith(("teacher", "_teacher")) for k in keys)
    assert {k.split(".")[0] for k in keys} == {"encoder", "quantize_layer", "quantize", "estimator"}
    assert all(p.requires_grad for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    feats = torch.randn(4, 48, 128)
    pad = torch.zeros(4, 48, dtype=torch.bool)
    pad[2, 30:] = True
    batch = {"feats": feats, "padding_mask": pad}
    model.train()
    assert not model.teacher.training
    losses = []
    for _ in range(25):
        loss, stats, weight = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(stats["cos_loss"].item())
    assert weight == 4 and stats["codes_used"] > 1
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    torch.testing.assert_close(model.quantize.codebook.norm(dim=-1), torch.ones(16))
    # the teacher is frozen: no gradient, no change
    assert all(p.grad is None for p in model.teacher.parameters())

    path = tmp_path / "tok_r2.pt"
    save_model(path, "beats_tokenizer", {"model": dataclasses.asdict(cfg)}, model.state_dict(), model.export())
    tok = load_tokenizer(path)
    first = tok.tokenize(feats, pad)
    assert torch.equal(first, tok.tokenize(feats, pad))
    assert torch.equal(first, load_tokenizer(path).tokenize(feats, pad))
    model.eval()
    with torch.no_grad():
        z, _ = model.tokenizer.project(feats, pad)
    assert torch.equal(first, model.quantize.codes(z))


def test_tasks_explain_missing_paths():
    with pytest.raises(ValueError, match="--model.teacher exp/beats_ssl_r1/model.pt"):
        BeatsTokenizerTask.build_model(TokenizerConfig(kind="distilled", encoder=dict(TINY)), DataInfo())
    with pytest.raises(NotImplementedError, match="no encoder"):
        BeatsTokenizerTask.build_encoder(TokenizerConfig(kind="random"))
    with pytest.raises(ValueError, match="--model.tokenizer exp/beats_tok_r1/model.pt"):
        BeatsSSLTask.build_model(BeatsSSLTask.ModelConfig(encoder=dict(TINY)), DataInfo())
    untrained = BeatsTokenizerTask.build_tokenizer(TokenizerConfig(kind="distilled", encoder=dict(TINY)))
    with pytest.raises(RuntimeError, match="never initialised"):
        untrained.tokenize(torch.randn(1, 32, 128))


# --- two processes (gloo) ----------------------------------------------------------------------
def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # each rank would pick different k-means seeds on its own
    _, data = clustered(num_clusters=6, per=20, dim=8, seed=rank)  # different data per rank
    q = NormEMAQuantizer(num_codes=6, dim=8, decay=0.8).train()
    q(data[None])  # k-means on rank 0's batch, broadcast; then one all-reduced EMA step
    torch.save({"codebook": q.codebook.clone(), "cluster_size": q.cluster_size.clone()}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_codebook_is_identical_on_every_rank_and_uses_all_data(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(r0["codebook"], r1["codebook"])
    # the usage counts are the sum over both ranks: 2 x 120 vectors, (1 - decay) of them after one step
    assert r0["cluster_size"].sum().item() == pytest.approx(0.2 * 240)
    assert torch.equal(r0["cluster_size"], r1["cluster_size"])


def test_fine_tuned_teacher_gives_per_patch_logit_targets(tmp_path):
    """iter3+: a fine-tuned classifier as teacher; the estimator regresses its per-patch logits."""
    from audiossl.tasks.finetune import FinetuneTask, load_finetuned

    ssl_path = make_teacher(tmp_path / "ssl_r1.pt")
    ft_cfg = FinetuneTask.ModelConfig(init=str(ssl_path), pooling="mean", loss="bce", multi_label=True)
    clf = FinetuneTask.build_model(ft_cfg, DataInfo(num_classes=7, label_names=[f"c{i}" for i in range(7)]))
    ft_path = tmp_path / "ft.pt"
    save_model(ft_path, "finetune", {"model": dataclasses.asdict(ft_cfg)}, clf.state_dict(), clf.export())

    cfg = TokenizerConfig(kind="distilled", codebook_size=16, codebook_dim=8, encoder=dict(TINY),
                          estimator_layers=1, teacher=str(ft_path))
    torch.manual_seed(0)
    model = BeatsTokenizerTask.build_model(cfg, DataInfo())
    feats = torch.randn(3, 48, 128)
    pad = torch.zeros(3, 48, dtype=torch.bool)
    pad[1, 32:] = True
    target = model.teacher(feats, pad)
    assert target.tokens.shape[-1] == 7
    # the targets are the classifier's head on each token: their masked mean is the clip's logits
    reference = load_finetuned(ft_path)
    with torch.no_grad():
        clip_logits = reference.logits(feats, pad)
        keep = (~target.padding_mask).unsqueeze(-1).float()
        pooled = (target.tokens * keep).sum(1) / keep.sum(1)
    torch.testing.assert_close(pooled, clip_logits, rtol=1e-4, atol=1e-5)

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    model.train()
    for _ in range(20):
        loss, stats, _ = model({"feats": feats, "padding_mask": pad})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(stats["cos_loss"].item())
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert all(p.grad is None for p in model.teacher.parameters())
