"""audiossl.train.trainer in one process: exact mid-epoch resume, NaN stop, validation and best-k."""
from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from train_testlib import make_dump, max_abs_diff, state_of, toy_config  # noqa: E402

from audiossl.tasks.toy import ToyClassifier  # noqa: E402
from audiossl.models.checkpoint import load_model  # noqa: E402
from audiossl.train.checkpoint import load_checkpoint  # noqa: E402
from audiossl.train.config import config_from_dict  # noqa: E402
from audiossl.train.trainer import NonFiniteLossError, TrainingInterrupted, train  # noqa: E402


@pytest.fixture(autouse=True)
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def data(tmp_path):
    make_dump(tmp_path / "train", num_utts=24, frames=(30, 60), seed=0)
    make_dump(tmp_path / "valid", num_utts=10, frames=(30, 60), seed=1)
    return tmp_path


RESUME_VARIANTS = {
    # random crops: 24 clips / (4 x 2) = 3 updates per epoch
    "crops": {"data": {"crop": "random", "target_frames": 40}},
    # label-balanced draws with replacement, whole clips padded per batch, length-aware batches
    "weighted": {"data": {"target_frames": None, "weighted_sampler": True, "samples_per_epoch": 24},
                 "model": {"loss": "bce"}},
    # the ark read front to back through a shuffle buffer (data.reading sequential)
    "sequential": {"data": {"crop": "random", "target_frames": 40, "reading": "sequential", "shuffle_buffer": 5}},
}


def resume_config(tmp, variant):
    # dropout (torch RNG), the sampler, accumulation, EMA and validation all have to be restored
    # for the resumed run to match the straight one
    raw = toy_config(
        tmp,
        model={"dropout": 0.3},
        data={"batch_size": 8, "max_batch_per_device": 4},  # 2 passes of 4 clips per update
        optim={"max_updates": 10, "warmup_updates": 3, "clip_norm": 1.0},
        trainer={"ema_decay": 0.9, "save_interval": 3, "valid_interval": 3, "log_interval": 1},
    )
    for section, values in RESUME_VARIANTS[variant].items():
        raw[section].update(values)
    return config_from_dict(raw)


def train_losses(exp: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (exp / "metrics.jsonl").read_text().splitlines()]
    return {r["update"]: r["loss"] for r in lines if r["split"] == "train"}


@pytest.mark.parametrize("variant", sorted(RESUME_VARIANTS))
def test_resume_mid_epoch_is_exact(data, monkeypatch, variant):
    cfg = resume_config(data, variant)
    straight = train(cfg, data / "exp_straight", device="cpu")
    assert straight.num_updates == 10

    def stop_at_5(self, num_updates):
        if num_updates == 5:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(ToyClassifier, "after_optimizer_step", stop_at_5)
    exp = data / "exp_resumed"
    with pytest.raises(TrainingInterrupted) as e:
        train(cfg, exp, device="cpu")
    assert e.value.num_updates == 5
    monkeypatch.undo()
    state = load_checkpoint(exp / "checkpoint_last.pt")
    assert state["num_updates"] == 5
    # update 5 is the 2nd update of the 2nd epoch: 4 of its 6 batches consumed
    assert (state["sampler"]["epoch"], state["sampler"]["position"]) == (1, 4)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the trainer restores the signal handlers"

    resumed = train(cfg, exp, device="cpu")
    assert resumed.num_updates == 10
    assert max_abs_diff(state_of(exp / "model.pt"), state_of(data / "exp_straight" / "model.pt")) < 1e-6
    a, b = train_losses(data / "exp_straight"), train_losses(exp)
    assert sorted(b) == list(range(1, 11)), "metrics.jsonl has each update once after the resume"
    assert all(a[u] == pytest.approx(b[u], abs=1e-6) for u in range(1, 11))
    last = load_checkpoint(exp / "checkpoint_last.pt")
    assert last["ema"] is not None and last["optimizer"]["state"], "EMA and optimizer state are saved"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data, monkeypatch):
    raw = toy_config(data, optim={"max_updates": 12}, trainer={"log_interval": 100, "save_interval": 4})
    raw["data"]["valid"] = None
    cfg = config_from_dict(raw)
    real_forward = ToyClassifier.forward
    calls = {"n": 0}

    def nan_at_6(self, batch):
        loss, stats, w = real_forward(self, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] >= 6:
                loss = loss * float("nan")
        return loss, stats, w

    monkeypatch.setattr(ToyClassifier, "forward", nan_at_6)
    exp = data / "exp"
    with pytest.raises(NonFiniteLossError) as e:
        train(cfg, exp, device="cpu")
    msg = str(e.value)
    assert "at update 6" in msg and "checkpoint_last.pt (update 4)" in msg
    state = load_checkpoint(exp / "checkpoint_last.pt")
    assert state["num_updates"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (exp / "checkpoints" / "checkpoint_8.pt").exists()
    assert not (exp / "model.pt").exists()


def test_validation_best_k_and_final_model(data):
    raw = toy_config(data, trainer={"keep_best": 2, "final_model": "best", "valid_interval": 2, "save_interval": 3})
    cfg = config_from_dict(raw)
    exp = data / "exp"
    result = train(cfg, exp, device="cpu")
    valid = [json.loads(x) for x in (exp / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in valid if r["split"] == "valid"]
    assert [r["update"] for r in valid] == [2, 4, 6, 8, 10, 12]
    losses = {r["update"]: r["loss"] for r in valid}
    best2 = sorted(losses, key=lambda u: (losses[u], u))[:2]
    assert [b["update"] for b in result.best] == best2
    assert sorted(p.name for p in (exp / "checkpoints").glob("best_*.pt")) == sorted(f"best_{u}.pt" for u in best2)
    assert sorted(p.name for p in (exp / "checkpoints").glob("checkpoint_*.pt")) == ["checkpoint_12.pt", "checkpoint_9.pt"]
    model = load_model(exp / "model.pt")
    best_state = torch.load(exp / "checkpoints" / f"best_{best2[0]}.pt", weights_only=False)["model"]
    assert max_abs_diff(model["model"], best_state) == 0.0
    assert model["task"] == "toy_classifier" and model["extra"]["label_names"] == ["c0", "c1", "c2"]
    assert model["config"]["trainer"]["final_model"] == "best"
    assert yaml.safe_load((exp / "config.yaml").read_text())["optim"]["max_updates"] == 12
    assert list((exp / "tensorboard").glob("events.out.tfevents.*"))
    assert math.isfinite(result.last_valid["loss"]) and "acc" in result.last_valid

    again = train(cfg, exp, device="cpu")  # re-running a finished training only re-exports
    assert again.num_updates == 12
    assert max_abs_diff(state_of(exp / "model.pt"), best_state) == 0.0


def test_bad_best_metric_is_named(data):
    cfg = config_from_dict(toy_config(data, trainer={"best_metric": "mAPP", "valid_interval": 2}))
    with pytest.raises(KeyError, match="mAPP"):
        train(cfg, data / "exp", device="cpu")


def test_max_updates_0_validates_and_exports(data, monkeypatch):
    from audiossl.tasks.toy import ToyClassifierTask

    real_build = ToyClassifierTask.build_model.__func__

    def frozen(cls, model_cfg, data_info):
        model = real_build(cls, model_cfg, data_info)
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    monkeypatch.setattr(ToyClassifierTask, "build_model", classmethod(frozen))
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(config_from_dict(toy_config(data)), data / "bad", device="cpu")
    result = train(config_from_dict(toy_config(data, optim={"max_updates": 0, "warmup_updates": 0})), data / "exp", device="cpu")
    assert result.num_updates == 0 and "loss" in result.last_valid
    written = load_model(data / "exp" / "model.pt")
    assert written["task"] == "toy_classifier"
    # the normalisation came from the train dump's stats.json; model.pt keeps it, to stand alone
    assert toy_config(data)["data"].get("norm_mean") is None
    assert (written["config"]["data"]["norm_mean"], written["config"]["data"]["norm_std"]) == (0.5, 1.5)


def test_sigusr1_also_stops_cleanly(data, monkeypatch):
    def stop_at_2(self, num_updates):
        if num_updates == 2:
            signal.raise_signal(signal.SIGUSR1)

    monkeypatch.setattr(ToyClassifier, "after_optimizer_step", stop_at_2)
    with pytest.raises(TrainingInterrupted) as e:
        train(config_from_dict(toy_config(data)), data / "exp", device="cpu")
    assert e.value.signum == signal.SIGUSR1 and e.value.num_updates == 2
    assert load_checkpoint(data / "exp" / "checkpoint_last.pt")["num_updates"] == 2


def test_resume_with_another_split_of_the_same_global_batch(data, monkeypatch):
    # stopped with passes of 4 clips, resumed with 2 x 2 (the same global batch): the epoch goes on after
    # the clips already seen, and the updates see the same clips as a straight run
    raw = toy_config(data, data={"crop": "random"}, optim={"max_updates": 10}, trainer={"valid_interval": 100})
    train(config_from_dict(raw), data / "straight", device="cpu")

    def stop_at_4(self, num_updates):
        if num_updates == 4:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(ToyClassifier, "after_optimizer_step", stop_at_4)
    with pytest.raises(TrainingInterrupted):
        train(config_from_dict(raw), data / "exp", device="cpu")
    monkeypatch.undo()
    assert load_checkpoint(data / "exp" / "checkpoint_last.pt")["sampler"] == {"epoch": 0, "position": 4, "clips": 16}
    split = dict(raw, data=dict(raw["data"], max_batch_per_device=2))
    train(config_from_dict(split), data / "exp", device="cpu")
    assert load_checkpoint(data / "exp" / "checkpoint_last.pt")["num_updates"] == 10
    assert max_abs_diff(state_of(data / "exp" / "model.pt"), state_of(data / "straight" / "model.pt")) < 1e-5


@pytest.mark.parametrize("multi_label", [False, True])
def test_validation_metrics_are_the_scored_ones(tmp_path, multi_label, caplog):
    """Clips longer than target_frames are validated in scoring's windows, scores averaged per clip
    (windows of digital silence left out), so train.log's acc/mAP is what the scoring stage reports
    for the same model and set; valid_crop: start scores the first window only."""
    import kaldiio
    import numpy as np

    from audiossl.score.inference import score_dump_dir
    from audiossl.score.metrics import compute_metrics
    from audiossl.train.trainer import Trainer

    make_dump(tmp_path / "train", num_utts=24, frames=(30, 60), seed=0, multi_label=multi_label)
    valid = make_dump(tmp_path / "valid", num_utts=12, frames=(30, 130), seed=1, multi_label=multi_label)
    feats = dict(kaldiio.load_scp(str(valid / "feats.scp")).items())
    with kaldiio.WriteHelper(f"ark,scp:{valid}/padded.ark,{valid}/feats.scp") as w:  # zero-padded clips, as ESC-50's
        for i, (utt, x) in enumerate(feats.items()):
            w[utt] = np.concatenate([x, np.full((60, x.shape[1]), -15.9424, np.float32)]) if i % 3 == 0 else x
    loss = {"loss": "bce"} if multi_label else {}
    cfg = config_from_dict(toy_config(tmp_path, model=loss, trainer={"best_metric": "mAP", "best_mode": "max"}))
    trainer = Trainer(cfg, tmp_path / "exp", device="cpu")
    with caplog.at_level("INFO", logger="audiossl.train.trainer"):
        result = trainer.fit()
    assert trainer.valid_set.num_clips == 12 and len(trainer.valid_set) > 20  # several windows per clip
    model = trainer.raw_model.eval()
    scored = score_dump_dir(model, valid, ["c0", "c1", "c2"], trainer.norm, window_frames=40)
    assert scored.num_windows.max() > 3 and (scored.num_windows < [len(trainer.valid_set.windows)]).all()
    metrics = compute_metrics(scored.scores, scored.targets, multi_label)
    for name in ("acc", "mAP") if not multi_label else ("mAP", "mAUC"):
        assert result.last_valid[name] == pytest.approx(metrics[name], abs=1e-6), name
    assert "12 clips in" in caplog.text and "scores averaged per clip" in caplog.text
    # the first window only: the old validation, not the scored number
    start = config_from_dict(toy_config(tmp_path, model=loss, data={"valid_crop": "start"},
                                        trainer={"best_metric": "mAP", "best_mode": "max"}))
    first = Trainer(start, tmp_path / "exp_start", device="cpu")
    first.fit()
    assert len(first.valid_set) == 12
