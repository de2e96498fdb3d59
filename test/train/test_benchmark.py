"""Tests of the throughput benchmark (audiossl/train/benchmark.py, audiossl/bin/benchmark.py) and of
the host-sync-free training steps it checks. No timing is asserted, only what the numbers mean."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiossl.bin.benchmark import main, parse_batch_sizes
from audiossl.models.beats.quantizer import NormEMAQuantizer
from audiossl.models.beats.ssl import EVAL_MASK_SEED, random_token_mask
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import get_task
from audiossl.train.benchmark import (
    BareViT,
    BenchOptions,
    HostSyncDetector,
    beats_ssl_config,
    count_flops,
    run_benchmark,
    write_beats_tokenizer,
)

# The documented keys of each kind of line (module docstring of audiossl/train/benchmark.py).
MATMUL_KEYS = {"case", "kind", "device", "device_name", "torch", "threads", "dtype", "size", "tflops"}
STEP_KEYS = {
    "case", "kind", "task", "device", "device_name", "torch", "threads", "precision", "compile", "tiny",
    "batch_size", "clones", "tokens", "teacher_tokens", "params_m", "steps", "warmup", "repeats", "step_ms",
    "step_ms_min", "step_ms_max", "clips_per_s", "flops_per_step", "tflops", "peak_tflops", "mfu", "peak_mem_mb",
    "mem_scope", "host_syncs", "host_sync_ops", "cuda_sync_warnings", "bare_clips_per_s", "bare_tflops", "efficiency",
}
LOADER_KEYS = {"case", "kind", "device", "device_name", "torch", "threads", "source", "frames", "batch_size", "num_workers",
               "batches", "clips", "step_ms", "clips_per_s"}
POSITIVE_STEP_KEYS = ("params_m", "step_ms", "step_ms_min", "step_ms_max", "clips_per_s", "flops_per_step", "tflops",
                      "peak_tflops", "mfu", "peak_mem_mb")


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run_cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audiossl.bin.benchmark", *args], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)


def test_tiny_cpu_run_prints_one_valid_json_line_per_case(repo_root):
    proc = run_cli(repo_root, "--tiny", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_case = {r["case"]: r for r in lines}
    assert len(by_case) == len(lines), "one line per case and batch size"
    assert set(by_case) == {"matmul", "bare_eat", "eat", "bare_beats", "beats", "bare_finetune", "finetune", "loader"}

    peak = by_case["matmul"]
    assert set(peak) == MATMUL_KEYS and peak["tflops"] > 0 and peak["dtype"] == "float32"
    for name in ("eat", "beats", "finetune"):
        for r in (by_case[name], by_case[f"bare_{name}"]):
            assert set(r) == STEP_KEYS, f"{r['case']}: keys {sorted(set(r) ^ STEP_KEYS)} differ"
            for key in POSITIVE_STEP_KEYS:
                assert r[key] > 0, f"{r['case']}: {key} = {r[key]}"
            assert (r["device"], r["precision"], r["tiny"], r["threads"]) == ("cpu", "fp32", True, 1)
            assert r["peak_tflops"] == peak["tflops"] and math.isclose(r["mfu"], r["tflops"] / r["peak_tflops"], rel_tol=3e-3)
            assert math.isclose(r["clips_per_s"], r["batch_size"] / r["step_ms"] * 1e3, rel_tol=3e-3)
            # no step waits for the device, but fine-tuning's one known wait: EATEncoder.forward asks
            # padding_mask.any() to return None when nothing is padded (the AbsEncoder contract),
            # though CLS pooling never reads the mask
            known = {"finetune": ["aten::_local_scalar_dense"]}.get(r["case"], [])
            assert r["host_syncs"] <= len(known) and set(r["host_sync_ops"]) <= set(known), r["host_sync_ops"]
        real, bare = by_case[name], by_case[f"bare_{name}"]
        assert real["kind"] == "real" and bare["kind"] == "bare" and bare["efficiency"] is None
        assert (bare["batch_size"], bare["tokens"], bare["clones"]) == (real["batch_size"], real["tokens"], real["clones"])
        assert real["bare_clips_per_s"] == bare["clips_per_s"] and real["bare_tflops"] == bare["tflops"]
        assert math.isclose(real["efficiency"], real["clips_per_s"] / bare["clips_per_s"], rel_tol=3e-3)
    # the tiny shapes: 128 frames -> 8 x 8 patches; EAT keeps 12 per clone (+ CLS), BEATs 16 of 64
    assert (by_case["eat"]["tokens"], by_case["eat"]["teacher_tokens"]) == (13, 65)
    assert by_case["beats"]["tokens"] == 16 and by_case["finetune"]["tokens"] == 65
    assert by_case["eat"]["clones"] == 4 and by_case["eat"]["task"] == "eat_pretrain"

    loader = by_case["loader"]
    assert set(loader) == LOADER_KEYS and loader["source"] == "synthetic"
    assert loader["clips"] == loader["batch_size"] * loader["batches"] and loader["clips_per_s"] > 0
    assert loader["step_ms"] > 0 and loader["num_workers"] == 1


def test_help_and_usage_errors(repo_root, capsys):
    proc = run_cli(repo_root, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout and "--batch-sizes" in proc.stdout
    for bad in (["--cases", "eat,gpt"], ["--batch-sizes", "eat=0"], ["--batch-sizes", "vit=4"], ["--steps", "0"]):
        with pytest.raises(SystemExit) as e:
            main(bad)
        assert e.value.code == 2, bad
    assert "unknown case" in capsys.readouterr().err


def test_batch_sizes_apply_to_every_model_case_or_to_one():
    assert parse_batch_sizes(["4,8"]) == {"eat": [4, 8], "beats": [4, 8], "finetune": [4, 8]}
    assert parse_batch_sizes(["eat=12,48", "loader=32"]) == {"eat": [12, 48], "loader": [32]}


def test_bare_vit_step_flops_match_the_analytic_count():
    B, L, D, depth = 3, 10, 32, 2
    model = BareViT(D, depth, num_heads=4, mlp_ratio=4.0)
    x = torch.randn(B, L, D)
    flops = count_flops(lambda: model(x).pow(2).mean().backward())
    # per layer and sequence: linears 24 L D^2 forward, twice that backward; attention 4 L^2 D
    # forward (q k^T, p v), 10 L^2 D backward (PyTorch counts the recomputed scores)
    assert flops == depth * B * (72 * L * D**2 + 14 * L**2 * D)


def test_grouped_convolution_backward_costs_twice_its_forward():
    conv = torch.nn.Conv2d(32, 64, 3, padding=1, groups=16, bias=False)
    x = torch.randn(2, 32, 5, 7, requires_grad=True)
    forward = 2 * 2 * 5 * 7 * 64 * (32 // 16) * 3 * 3  # 2 x batch x positions x C_out x C_in/groups x kernel
    assert count_flops(lambda: conv(x)) == forward
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward  # + input and weight gradients


def test_host_sync_detector_flags_what_waits_for_the_device():
    x = torch.randn(4, 6)
    mask = x > 0
    with HostSyncDetector() as d:
        x.gather(1, torch.zeros(4, 2, dtype=torch.long))
        x[torch.tensor([0, 2])]
        x.topk(2, dim=1)
        torch.where(mask, x, 0.0).sum()
    assert d.ops == []
    with HostSyncDetector() as d:
        x.sum().item()
        x[mask]
        mask.nonzero()
        torch.repeat_interleave(torch.tensor([1, 2]))
        bool(mask.any())
    assert d.ops == ["aten::_local_scalar_dense", "aten::index.Tensor[bool]", "aten::nonzero",
                     "aten::repeat_interleave", "aten::_local_scalar_dense"]


def test_loader_case_reads_a_given_feats_scp(tmp_path):
    ark, scp = tmp_path / "x.ark", tmp_path / "some.scp"  # not named feats.scp
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as w:
        for i in range(6):
            w(f"u{i}", np.random.default_rng(i).standard_normal((150, 128)).astype(np.float32))
    opts = BenchOptions(device="cpu", cases=("loader",), tiny=True, feats_scp=str(scp), num_workers=0,
                        batch_sizes={"loader": [4]}, loader_batches=3)
    [r] = run_benchmark(opts)
    assert r["source"] == str(scp) and r["frames"] == 128 and r["clips"] == 12 and r["num_workers"] == 0
    with pytest.raises(FileNotFoundError, match="no such feats.scp"):
        run_benchmark(BenchOptions(device="cpu", cases=("loader",), tiny=True, feats_scp=str(tmp_path / "none.scp")))


@pytest.mark.parametrize("padded", [False, True])
def test_beats_ssl_loss_by_index_equals_boolean_mask_selection(tmp_path, padded):
    """The SSL loss reads masked tokens by index (no host sync); it must equal the loss over the
    boolean selection of masked, non-padded tokens, computed here from the model's own pieces."""
    tok = write_beats_tokenizer(tmp_path / "tok.pt", tiny=True, kind="random", seed=0)
    torch.manual_seed(0)
    model = get_task("beats_ssl").build_model(beats_ssl_config(True, str(tok)), DataInfo()).eval()
    feats = torch.randn(3, 128, 128)
    padding_mask = torch.zeros(3, 128, dtype=torch.bool)
    if padded:
        padding_mask[1, 40:] = True
        padding_mask[2, 100:] = True
    loss, stats, _ = model({"feats": feats, "padding_mask": padding_mask})

    with torch.no_grad():
        labels = model.tokenizer.tokenize(feats, padding_mask)
        x, token_mask = model.encoder.patch_embed(feats, padding_mask)
        B, N, D = x.shape
        gen = torch.Generator().manual_seed(EVAL_MASK_SEED)  # eval mode: the model's fixed masks
        keep_idx, masked = random_token_mask(B, N, model.mask_ratio, token_mask, x.device, gen)
        visible = x.gather(1, keep_idx[:, :, None].expand(-1, -1, D))
        h, _ = model.encoder.encode_tokens(visible, token_mask.gather(1, keep_idx), positions=keep_idx)
        h = model.predictor(h, keep_idx, N, token_mask)
        select = masked & ~token_mask
        logits = model.predictor.head(h[select])
        expected = F.cross_entropy(logits, labels[select], label_smoothing=model.label_smoothing)
        expected_acc = (logits.argmax(-1) == labels[select]).float().mean()
    assert int(select.sum()) < B * (N - keep_idx.shape[1]) or not padded  # padding really was skipped
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(stats["acc"], expected_acc)


def test_beats_ssl_batch_without_any_target_token_is_an_error(tmp_path):
    tok = write_beats_tokenizer(tmp_path / "tok.pt", tiny=True, kind="random", seed=0)
    model = get_task("beats_ssl").build_model(beats_ssl_config(True, str(tok)), DataInfo()).eval()
    padding_mask = torch.ones(2, 128, dtype=torch.bool)
    padding_mask[:, :16] = False  # 8 real tokens of 64: all of them stay visible
    with pytest.raises(RuntimeError, match="no masked, non-padded token"):
        model({"feats": torch.randn(2, 128, 128), "padding_mask": padding_mask})


def test_quantizer_remembers_an_initialised_codebook_until_a_state_is_loaded():
    q = NormEMAQuantizer(num_codes=8, dim=4, kmeans_init=True)
    fresh = {k: v.clone() for k, v in q.state_dict().items()}
    with pytest.raises(RuntimeError, match="never initialised"):
        q.codes(torch.randn(1, 3, 4))
    q.embedding.initted.fill_(1.0)
    q.embedding.weight.copy_(F.normalize(torch.randn(8, 4), dim=-1))
    with HostSyncDetector() as d:
        q.codes(torch.randn(1, 3, 4))
        q.codes(torch.randn(1, 3, 4))
    assert d.ops == ["aten::_local_scalar_dense"], "the flag is read once, then remembered"
    q.load_state_dict(fresh)  # an uninitialised codebook again
    with pytest.raises(RuntimeError, match="never initialised"):
        q.codes(torch.randn(1, 3, 4))
