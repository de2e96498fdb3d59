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
    cores_for_gpus,
    speech_like,
    write_beats_tokenizer,
    write_synthetic_dumps,
)

# The documented keys of each kind of line (module docstring of audiossl/train/benchmark.py).
MATMUL_KEYS = {"case", "kind", "device", "device_name", "torch", "threads", "dtype", "size", "tflops"}
STEP_KEYS = {
    "case", "kind", "task", "device", "device_name", "torch", "threads", "precision", "compile", "tiny",
    "batch_size", "clones", "tokens", "teacher_tokens", "params_m", "steps", "warmup", "repeats", "step_ms",
    "step_ms_min", "step_ms_max", "clips_per_s", "flops_per_step", "tflops", "peak_tflops", "mfu", "peak_mem_mb",
    "mem_scope", "host_syncs", "host_sync_ops", "cuda_sync_warnings", "bare_clips_per_s", "bare_tflops", "efficiency",
}
LOADER_KEYS = {"case", "kind", "device", "device_name", "torch", "threads", "source", "format", "fbank_kind", "frames",
               "clip_frames", "bytes_per_clip", "batch_size", "num_workers", "batches", "clips", "step_ms", "clips_per_s",
               "clips_per_s_per_worker", "cores_for_8_gpus_eat", "cores_for_8_gpus_beats", "device_ms_per_batch",
               "device_clips_per_s"}
STORAGE_KEYS = {"case", "kind", "source", "signal", "format", "fbank_kind", "clips", "clip_s", "clip_frames",
                "bytes_per_clip", "as2m_clips", "as2m_gb", "as2m_gb_both_models", "vs_fbank_both_models"}
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
    data_path = [r for r in lines if r["case"] in ("loader", "storage")]
    by_case = {r["case"]: r for r in lines if r not in data_path}
    assert len(by_case) + len(data_path) == len(lines), "one line per model case and batch size"
    assert set(by_case) == {"matmul", "bare_eat", "eat", "bare_beats", "beats", "bare_finetune", "finetune"}

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

    check_data_path_lines(data_path, frames=128, clip_frames=126, clip_s=1.275)


def check_data_path_lines(lines: list[dict], frames: int, clip_frames: int, clip_s: float) -> None:
    """The storage and loader lines of a synthetic run: every format and front end, sizes that make
    sense for the speech-like clips, cores from the rates. Nothing about speed."""
    storage = {(r["format"], r["fbank_kind"]): r for r in lines if r["case"] == "storage"}
    assert set(storage) == {("fbank", "beats"), ("fbank", "eat"), ("raw_flac", None), ("raw_wav", None)}
    for r in storage.values():
        assert set(r) == STORAGE_KEYS and r["kind"] == "storage" and r["source"] == "synthetic" and r["signal"]
        assert (r["clip_frames"], r["clip_s"], r["as2m_clips"]) == (clip_frames, clip_s, 2_000_000) and r["clips"] >= 4
        assert r["bytes_per_clip"] > 0 and r["as2m_gb"] > 0
        assert math.isclose(r["as2m_gb"], 2e6 * r["bytes_per_clip"] * 10 / clip_s / 1e9, rel_tol=3e-3)
    fbank, flac, wav = storage["fbank", "eat"], storage["raw_flac", None], storage["raw_wav", None]
    assert storage["fbank", "beats"]["bytes_per_clip"] == fbank["bytes_per_clip"]  # same shape, float32
    # float32 log-mel: 128 x 4 bytes per frame, plus each matrix's header; 16-bit WAV: 2 bytes a sample
    assert clip_frames * 512 < fbank["bytes_per_clip"] < clip_frames * 512 + 100
    assert (clip_s * 16000 * 2) < wav["bytes_per_clip"] < clip_s * 16000 * 2 + 100
    assert 0 < flac["bytes_per_clip"] < wav["bytes_per_clip"] < fbank["bytes_per_clip"]  # FLAC: lossless, smaller
    assert fbank["as2m_gb_both_models"] == storage["fbank", "beats"]["as2m_gb_both_models"]
    assert math.isclose(fbank["as2m_gb_both_models"], 2 * fbank["as2m_gb"], rel_tol=3e-3)  # one dump per front end
    assert fbank["vs_fbank_both_models"] == 1.0 and flac["as2m_gb_both_models"] == flac["as2m_gb"]
    assert math.isclose(flac["vs_fbank_both_models"], flac["as2m_gb"] / fbank["as2m_gb_both_models"], rel_tol=3e-3)
    assert flac["vs_fbank_both_models"] < 0.2  # the target: raw <= 1/5 of the two fbank dumps

    loaders = {(r["format"], r["fbank_kind"]): r for r in lines if r["case"] == "loader"}
    assert set(loaders) == {(f, k) for f in ("fbank", "raw_flac", "raw_flac_device") for k in ("beats", "eat")}
    for (fmt, kind), r in loaders.items():
        assert set(r) == LOADER_KEYS, f"{fmt}/{kind}: keys {sorted(set(r) ^ LOADER_KEYS)} differ"
        assert (r["kind"], r["source"], r["frames"], r["clip_frames"]) == ("loader", "synthetic", frames, clip_frames)
        assert r["bytes_per_clip"] == storage[("fbank", kind) if fmt == "fbank" else ("raw_flac", None)]["bytes_per_clip"]
        assert r["clips"] == r["batch_size"] * r["batches"] and r["step_ms"] > 0 and r["clips_per_s"] > 0
        assert math.isclose(r["clips_per_s"], r["clips"] / (r["step_ms"] * r["batches"]) * 1e3, rel_tol=3e-3)
        assert math.isclose(r["clips_per_s_per_worker"], r["clips_per_s"] / max(r["num_workers"], 1), rel_tol=3e-3)
        other = "beats" if kind == "eat" else "eat"
        assert r[f"cores_for_8_gpus_{other}"] is None, "a front end's rate only says something about its model"
        assert r[f"cores_for_8_gpus_{kind}"] >= 1
        needed = 8 * {"eat": 290, "beats": 4200}[kind] / r["clips_per_s_per_worker"]  # from the line's 4 digits
        assert needed * (1 - 1e-3) <= r[f"cores_for_8_gpus_{kind}"] < needed * (1 + 1e-3) + 1  # its ceiling
        if fmt == "raw_flac_device":
            assert r["device_ms_per_batch"] > 0
            assert math.isclose(r["device_clips_per_s"], r["batch_size"] / r["device_ms_per_batch"] * 1e3, rel_tol=3e-3)
        else:
            assert r["device_ms_per_batch"] is None and r["device_clips_per_s"] is None


def test_cores_for_8_gpus_and_the_synthetic_signal():
    assert cores_for_gpus(290.0, "eat") == 8 and cores_for_gpus(289.0, "eat") == 9  # 8 x 290 clips/s
    assert cores_for_gpus(4200.0, "beats") == 8 and cores_for_gpus(100.0, "beats") == 336
    x = speech_like(16000, seed=3)
    assert np.array_equal(x, speech_like(16000, seed=3)) and not np.array_equal(x, speech_like(16000, seed=4))
    assert np.abs(x).max() < 1.0  # 16 bits without clipping
    assert 20 * np.log10(np.sqrt(np.mean(x**2))) == pytest.approx(-24, abs=0.5)


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
    assert (r["format"], r["fbank_kind"], r["clip_frames"], r["bytes_per_clip"]) == ("fbank", None, None, None)
    assert r["cores_for_8_gpus_eat"] >= 1 and r["cores_for_8_gpus_beats"] >= 1  # front end unknown: both
    with pytest.raises(FileNotFoundError, match="no such feats.scp"):
        run_benchmark(BenchOptions(device="cpu", cases=("loader",), tiny=True, feats_scp=str(tmp_path / "none.scp")))


def test_loader_case_reads_a_given_wav_scp_with_both_front_ends(tmp_path):
    dirs = write_synthetic_dumps(tmp_path / "dumps", num_clips=4, num_samples=8000, seed=0)
    scp = tmp_path / "train.scp"  # not named wav.scp, WAV inside the ark
    scp.write_text((dirs["raw_wav"] / "wav.scp").read_text())
    opts = BenchOptions(device="cpu", cases=("loader",), tiny=True, wav_scp=str(scp), num_workers=0,
                        batch_sizes={"loader": [2]}, loader_batches=2)
    lines = run_benchmark(opts)
    assert [(r["case"], r["format"], r["fbank_kind"]) for r in lines] == [
        ("loader", f, k) for f in ("raw_wav", "raw_wav_device") for k in ("beats", "eat")]
    for r in lines:
        assert r["source"] == str(scp) and r["clips"] == 4 and r["clips_per_s"] > 0
        assert (r["device_ms_per_batch"] is not None) == r["format"].endswith("_device")
    with pytest.raises(FileNotFoundError, match="no such wav.scp"):
        run_benchmark(BenchOptions(device="cpu", cases=("loader",), tiny=True, wav_scp=str(tmp_path / "none.scp")))


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
