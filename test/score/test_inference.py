"""Sliding-window inference over a kaldiio dump: window placement, padding, mean/max, whole clips."""
import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from audiossl.data.fbank import FeatureNorm
from audiossl.data.windows import window_starts
from audiossl.score.inference import resolve_norm, score_dump_dir
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import get_task
from audiossl.tasks.finetune import FinetuneConfig

NORM = FeatureNorm(mean=2.0, std=0.5)  # normalised = (x - 2) / 1


class Probe(nn.Module):
    """predict -> [first frame's value, last real frame's value, real frames, window length].

    Feature bin 0 of frame t holds t + 2 (normalised: t), so the outputs say exactly which frames
    a window covered and how it was padded.
    """

    def __init__(self):
        super().__init__()
        self.calls = []

    def predict(self, batch):
        feats, mask = batch["feats"], batch["padding_mask"]
        self.calls.append(tuple(feats.shape))
        real = (~mask).sum(1)
        last = feats[torch.arange(len(feats)), (real - 1).clamp(min=0), 0]
        T = torch.full_like(last, feats.shape[1])
        return torch.stack([feats[:, 0, 0], last, real.float(), T], dim=1)


def write_dump(d, lengths, labels=None):
    d.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
        for i, T in enumerate(lengths):
            x = np.zeros((T, 4), dtype=np.float32)
            x[:, 0] = np.arange(T) + 2.0
            w(f"utt{i}", x)
    if labels is not None:
        (d / "labels.txt").write_text("".join(f"{i} {name} Name {name}\n" for i, name in enumerate(labels)))
        (d / "utt2label").write_text("".join(f"utt{i} {labels[i % len(labels)]}\n" for i in range(len(lengths))))
    return d


def test_window_starts():
    assert window_starts(50, 100, 50) == [0]
    assert window_starts(100, 100, 50) == [0]
    assert window_starts(250, 100, 50) == [0, 50, 100, 150]
    assert window_starts(260, 100, 50) == [0, 50, 100, 150, 160]  # the last window ends at the last frame
    assert window_starts(101, 100, 100) == [0, 1]


def test_sliding_windows_mean_and_max(tmp_path):
    dump = write_dump(tmp_path / "d", [260, 40], labels=["a", "b", "c", "d"])
    probe = Probe()
    res = score_dump_dir(probe, dump, ["a", "b", "c", "d"], NORM, window_frames=100, hop_frames=50,
                         reduce="mean", batch_size=3)
    assert res.utt_ids == ["utt0", "utt1"]
    assert res.num_windows.tolist() == [5, 1]
    starts = [0, 50, 100, 150, 160]
    np.testing.assert_allclose(res.scores[0], [np.mean(starts), np.mean(starts) + 99, 100, 100])
    # The 40-frame clip is padded to the full window (100), padding marked, as in training.
    np.testing.assert_allclose(res.scores[1], [0, 39, 40, 100])
    assert all(shape[1] == 100 for shape in probe.calls) and sum(s[0] for s in probe.calls) == 6
    res_max = score_dump_dir(Probe(), dump, ["a", "b", "c", "d"], NORM, 100, 50, reduce="max")
    np.testing.assert_allclose(res_max.scores[0], [160, 259, 100, 100])
    # Targets follow utt2label in the model's label order; display names from labels.txt.
    assert res.targets.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]
    assert res.display_names == ["Name a", "Name b", "Name c", "Name d"]


def test_whole_clips_are_batched_by_equal_length_unpadded(tmp_path):
    dump = write_dump(tmp_path / "d", [30, 70, 50, 30, 30, 50])
    probe = Probe()
    res = score_dump_dir(probe, dump, ["x", "y", "z", "w"], NORM, window_frames=0, batch_size=2)
    np.testing.assert_allclose(res.scores[:, :3], [[0, 29, 30], [0, 69, 70], [0, 49, 50], [0, 29, 30],
                                                   [0, 29, 30], [0, 49, 50]])
    assert res.targets is None
    assert probe.calls == [(2, 30, 4), (1, 30, 4), (2, 50, 4), (1, 70, 4)]  # one length per batch


def test_padding_is_a_zero_of_raw_log_mel(tmp_path):
    dump = write_dump(tmp_path / "d", [10])

    class PadProbe(nn.Module):
        def predict(self, batch):
            return batch["feats"][:, -1, :1].expand(-1, 2)  # a padded frame's value

    res = score_dump_dir(PadProbe(), dump, ["a", "b"], NORM, window_frames=16)
    assert res.scores[0, 0] == pytest.approx((0 - NORM.mean) / (2 * NORM.std))


def test_resolve_norm_order(tmp_path, monkeypatch):
    assert resolve_norm({}, 1.0, 2.0) == FeatureNorm(1.0, 2.0)
    assert resolve_norm({"data": {"norm_mean": 3.0, "norm_std": 4.0}}) == FeatureNorm(3.0, 4.0)
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "stats.json").write_text(json.dumps({"mean": -5.0, "std": 6.0}))
    monkeypatch.chdir(tmp_path)  # paths in saved configs are relative to the recipe dir
    assert resolve_norm({"data": {"train": "dump", "norm_mean": None, "norm_std": None}}) == FeatureNorm(-5.0, 6.0)
    with pytest.raises(ValueError, match="--norm-mean"):
        resolve_norm({"data": {"train": "missing"}}, where="m.pt")


def test_windows_of_digital_silence_are_not_scored(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    x = np.zeros((260, 4), dtype=np.float32)
    x[:, 0] = np.arange(260) + 2.0
    x[120:] = -15.9424  # zero-padded audio from frame 120 on: flat at the log floor
    silent = np.full((150, 4), -15.9424, dtype=np.float32)
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
        w("a_padded", x)
        w("b_silent", silent)
    res = score_dump_dir(Probe(), d, ["a", "b", "c", "d"], NORM, window_frames=100, hop_frames=50)
    # windows at 0 and 50 hold sound; 100 holds 20 frames of it; 150 and 160 are all padding
    assert res.num_windows.tolist() == [3, 2]  # a clip of nothing but silence keeps all its windows
    np.testing.assert_allclose(res.scores[0][0], np.mean([0, 50, 100]))


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("task, conf, pooling, windows", [
    ("beats_ssl", "egs/spc2/conf/cpu/beats_ssl.yaml", "mean", [96, 0]),
    ("eat_pretrain", "egs/spc2/conf/cpu/eat_pretrain.yaml", "cls", [96]),
])
def test_a_clips_scores_do_not_depend_on_what_it_is_batched_with(tmp_path, task, conf, pooling, windows):
    torch.manual_seed(0)
    encoder = yaml.safe_load((REPO / conf).read_text())["model"]
    cfg = FinetuneConfig(encoder_task=task, encoder=encoder, pooling=pooling, head_norm=pooling == "cls",
                         head_init_std=0.5, loss="ce")
    model = get_task("finetune").build_model(cfg, DataInfo(num_classes=3, label_names=["a", "b", "c"])).eval()
    rng = np.random.default_rng(0)
    dump = tmp_path / "d"
    dump.mkdir()
    lengths = [96, 60, 150, 96, 250, 40, 60, 96]
    with kaldiio.WriteHelper(f"ark,scp:{dump / 'feats.ark'},{dump / 'feats.scp'}") as w:
        for i, T in enumerate(lengths):
            w(f"utt{i}", rng.normal(-6.0, 3.0, (T, 128)).astype(np.float32))
    norm = FeatureNorm(-6.0, 3.0)
    for window in windows:
        alone = score_dump_dir(model, dump, ["a", "b", "c"], norm, window_frames=window, batch_size=1)
        mixed = score_dump_dir(model, dump, ["a", "b", "c"], norm, window_frames=window, batch_size=8)
        assert alone.scores.std() > 1e-3, "the scores must differ between clips for the test to mean anything"
        np.testing.assert_allclose(mixed.scores, alone.scores, rtol=0, atol=1e-5, err_msg=f"window {window}")
