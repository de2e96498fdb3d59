"""The mini recipe end to end: every stage on a small synthetic corpus, with shortened schedules.

It checks what the recipe promises, with fbank dumps and with one raw audio dump: each stage writes
what the next reads, BEATs' two rounds and
EAT's pre-training lower their losses, the fine-tuned models score above chance, the from-scratch
controls, linear probes and the log-mel baseline are scored beside them, RESULTS.md and the plots
exist, and re-running finished stages skips the training and reproduces the scores. The run puts
independent runs side by side (--parallel-runs 2), the rerun one at a time.
"""
import json
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "egs" / "mini"
NUM_CLASSES = 5


# BEATs' stages cost most on CPU: shorten them; EAT pre-training and fine-tuning keep their schedules.
SHORT_SCHEDULES = {"beats_ssl": 40, "beats_tokenizer": 40}


def shorten(conf_src: Path, conf_dst: Path, max_updates: dict[str, int]) -> None:
    """Copy the recipe's configs, with max_updates[task] updates for the tasks named there."""
    conf_dst.mkdir()
    for src in conf_src.iterdir():
        if src.suffix != ".yaml":
            (conf_dst / src.name).symlink_to(src)
            continue
        cfg = yaml.safe_load(src.read_text())
        optim, trainer = cfg.get("optim", {}), cfg.get("trainer", {})
        if optim.get("max_updates", 0) > 0 and cfg["task"] in max_updates:
            n = max_updates[cfg["task"]]
            optim["max_updates"] = n
            optim["warmup_updates"] = min(optim.get("warmup_updates", 0), n // 4)
            trainer.update(log_interval=5, valid_interval=n, save_interval=n)
        (conf_dst / src.name).write_text(yaml.safe_dump(cfg, sort_keys=False))


def metrics(exp: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


CORPUS = ["--local-data-opts", "--num-train 12 --num-dev 4 --num-test 6"]


def run_mini(root: Path, *options: str) -> Path:
    """A mini recipe dir (symlinks into the repository, short configs) after a full run."""
    for entry in MINI.iterdir():
        if entry.name in ("conf", "data", "dump", "exp", "downloads", "RESULTS.md"):
            continue
        (root / entry.name).symlink_to(entry.resolve())
    shorten(MINI / "conf", root / "conf", SHORT_SCHEDULES)
    res = subprocess.run(["./run.sh", "--nj", "2", "--parallel-runs", "2", *CORPUS, *options],
                         cwd=root, capture_output=True, text=True, timeout=1500)
    (root / "run.log").write_text(res.stdout + res.stderr)
    assert res.returncode == 0, f"mini recipe failed; tail of its log:\n{(res.stdout + res.stderr)[-4000:]}"
    assert "Successfully finished" in res.stdout
    return root


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """The mini recipe as its run.sh sets it (fbank dumps), after a full run."""
    return run_mini(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="module")
def raw_recipe(tmp_path_factory) -> Path:
    """The mini recipe with --feats-type raw: one 16-bit FLAC dump for both models; pre-training makes
    its features on the device (data.frontend device: here the CPU), the other stages in the loader
    or the scorer. One BEATs round, one init, to keep it short."""
    return run_mini(tmp_path_factory.mktemp("mini_raw"), "--feats-type", "raw", "--beats-rounds", "1",
                    "--finetune-init", "pretrained", "--pretrain-args", "--data.frontend device")


def test_stages_write_what_the_next_reads(recipe):
    for s in ("train", "dev", "test"):
        assert (recipe / "data" / s / "wav.scp").is_file()
        for kind in ("beats", "eat"):
            assert (recipe / "dump" / f"fbank_{kind}" / s / "feats.scp").is_file()
            assert json.loads((recipe / "dump" / f"fbank_{kind}" / s / "stats.json").read_text())["std"] > 0
    for tag in ("beats_tok_r1", "beats_ssl_r1", "beats_tok_r2", "beats_ssl_r2", "eat_pretrain",
                "finetune_beats", "finetune_eat", "finetune_beats_scratch", "finetune_eat_scratch"):
        assert (recipe / "exp" / tag / "model.pt").is_file(), f"exp/{tag}/model.pt missing"
        assert (recipe / "exp" / tag / "run.sh").is_file(), f"exp/{tag}/run.sh (replay) missing"


@pytest.mark.parametrize("tag", ["beats_ssl_r1", "beats_ssl_r2", "eat_pretrain"])
def test_pretraining_loss_goes_down(recipe, tag):
    rows = metrics(recipe / "exp" / tag, "train")
    assert len(rows) >= 4
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-2:]) / 2
    assert last < 0.9 * first, f"{tag}: loss {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("tag", ["beats_ssl_r1", "beats_ssl_r2"])
def test_masked_label_accuracy_above_chance(recipe, tag):
    last = metrics(recipe / "exp" / tag, "train")[-1]
    # chance is 1 / codebook size (1024) for a uniform guess; the tokens are far from uniform, so
    # compare with a generous bar that an untrained predictor does not reach.
    assert last["acc"] > 0.05, f"{tag}: masked-label accuracy {last['acc']:.3f}"


@pytest.mark.parametrize("model", ["beats", "eat"])
def test_finetuned_models_score_above_chance(recipe, model):
    result = json.loads((recipe / "exp" / f"finetune_{model}" / "scores" / "test" / "metrics.json").read_text())
    assert result["num_utts"] == 6 * NUM_CLASSES
    assert result["acc"] > 2 / NUM_CLASSES, f"{model}: test accuracy {result['acc']}"


@pytest.mark.parametrize("model", ["beats", "eat"])
def test_scratch_control_has_the_architecture_but_not_the_weights(recipe, model):
    import torch

    pre = torch.load(recipe / "exp" / f"finetune_{model}" / "model.pt", map_location="cpu", weights_only=False)
    scratch = torch.load(recipe / "exp" / f"finetune_{model}_scratch" / "model.pt", map_location="cpu", weights_only=False)
    assert scratch["config"]["model"]["init_weights"] is False
    assert scratch["config"]["model"]["encoder"] == pre["config"]["model"]["encoder"]
    assert scratch["model"].keys() == pre["model"].keys()
    result = json.loads((recipe / "exp" / f"finetune_{model}_scratch" / "scores" / "test" / "metrics.json").read_text())
    assert result["num_utts"] == 6 * NUM_CLASSES and 0 <= result["acc"] <= 1


@pytest.mark.parametrize("tag", ["probe_beats", "probe_eat", "probe_beats_scratch", "probe_eat_scratch", "baseline_logmel"])
def test_linear_probes_and_baseline_are_scored(recipe, tag):
    probe = json.loads((recipe / "exp" / tag / "probe.json").read_text())
    assert probe["random_init"] is tag.endswith("_scratch")
    result = json.loads((recipe / "exp" / tag / "scores" / "test" / "metrics.json").read_text())
    assert result["num_utts"] == 6 * NUM_CLASSES
    if tag == "baseline_logmel":  # the 5 mini classes differ in spectrum: the statistics separate them
        assert result["acc"] > 2 / NUM_CLASSES, f"{tag}: test accuracy {result['acc']}"


def test_results_and_plots(recipe):
    text = (recipe / "RESULTS.md").read_text()
    for tag in ("finetune_beats", "finetune_eat", "finetune_eat_scratch", "probe_eat", "probe_eat_scratch", "baseline_logmel"):
        assert f"| {tag} |" in text, tag
    assert "random (scratch)" in text and "linear probe" in text and "trivial baseline" in text
    assert list((recipe / "exp" / "finetune_eat" / "plots").glob("*.png"))
    assert (recipe / "exp" / "finetune_eat" / "plots" / "confusion_test.png").is_file()


def test_rerun_skips_training_and_reproduces_scores(recipe):
    score = recipe / "exp" / "finetune_eat" / "scores" / "test" / "metrics.json"
    before = json.loads(score.read_text())
    model_mtime = (recipe / "exp" / "finetune_eat" / "model.pt").stat().st_mtime
    res = subprocess.run(["./run.sh", "--stage", "5", "--stop-stage", "6", "--finetune-models", "eat"],
                         cwd=recipe, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "exp/finetune_eat/model.pt exists: skipping" in res.stdout
    assert (recipe / "exp" / "finetune_eat" / "model.pt").stat().st_mtime == model_mtime
    after = json.loads(score.read_text())
    assert after["acc"] == before["acc"] and after["mAP"] == before["mAP"]


def test_raw_audio_dump_serves_every_stage(raw_recipe):
    assert not list((raw_recipe / "dump").glob("fbank_*")), "a raw run writes no fbank dump"
    for s in ("train", "dev", "test"):
        d = raw_recipe / "dump" / "raw" / s
        assert (d / "wav.scp").is_file() and (d / "utt2num_samples").is_file()
        for kind in ("beats", "eat"):
            assert json.loads((d / f"stats_{kind}.json").read_text())["std"] > 0
    for tag in ("beats_tok_r1", "beats_ssl_r1", "eat_pretrain", "finetune_beats", "finetune_eat"):
        assert (raw_recipe / "exp" / tag / "model.pt").is_file(), f"exp/{tag}/model.pt missing"
    assert "features made on the device" in (raw_recipe / "exp" / "eat_pretrain" / "train.log").read_text()
    for model in ("beats", "eat"):
        result = json.loads((raw_recipe / "exp" / f"finetune_{model}" / "scores" / "test" / "metrics.json").read_text())
        assert result["num_utts"] == 6 * NUM_CLASSES and result["acc"] > 2 / NUM_CLASSES, f"{model}: {result['acc']}"
    for tag in ("probe_beats", "probe_eat", "baseline_logmel"):
        result = json.loads((raw_recipe / "exp" / tag / "scores" / "test" / "metrics.json").read_text())
        assert result["num_utts"] == 6 * NUM_CLASSES
    assert "| finetune_eat |" in (raw_recipe / "RESULTS.md").read_text()


def test_raw_dump_features_are_the_fbank_dumps(recipe, raw_recipe, monkeypatch):
    """The same corpus through both feature types: every clip's features within 1e-4. (The scp files
    name their arks relative to the recipe dir, the working directory of every stage.)"""
    import numpy as np

    from audiossl.data.dump import Dump

    for s in ("train", "dev", "test"):
        for kind in ("beats", "eat"):
            monkeypatch.chdir(recipe)
            fbank = Dump(f"dump/fbank_{kind}/{s}")
            expected = {utt: fbank[utt] for utt in fbank}
            monkeypatch.chdir(raw_recipe)
            raw = Dump(f"dump/raw/{s}", kind)
            assert raw.utt_ids == list(expected)
            for utt in raw:
                np.testing.assert_allclose(raw[utt], expected[utt], atol=1e-4, rtol=0, err_msg=f"{s} {kind} {utt}")
