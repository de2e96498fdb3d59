"""Linear probes and the log-mel baseline: clip embeddings (batch-independent, windowed, padded as
the model sees clips), digital silence, and bin/probe end to end on tiny BEATs and EAT model.pt files,
cross-validation averaging and the RESULTS.md rows."""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import kaldiio
import numpy as np
import pytest
import torch

from audiossl.bin import make_results as make_results_cli
from audiossl.bin import probe as probe_cli
from audiossl.bin import score as score_cli
from audiossl.data.fbank import FeatureNorm, compute_fbank, normalize
from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel
from audiossl.score.probe import (
    digital_silence_frames,
    encoder_embeddings,
    logmel_stats,
    run_probe,
    score_dir_name,
)
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import TASKS, AbsTask, register_task
from audiossl.tasks.beats_ssl import BeatsSSLTask
from audiossl.tasks.beats_tokenizer import BeatsTokenizerTask
from audiossl.models.checkpoint import save_model

torch.set_num_threads(1)

LABELS = ["dog", "rain", "siren"]
BEATS_TINY = dict(  # as test/models/test_beats_extract.py
    encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4, embed_dim=32,
    conv_pos=16, conv_pos_groups=4, num_buckets=32, max_distance=64, encoder_layerdrop=0.0,
    dropout=0.0, attention_dropout=0.0,
)
EAT_TINY = dict(embed_dim=32, depth=2, num_heads=4, decoder_dim=32, decoder_layers=2, clone_batch=3,
                average_top_k_layers=2, max_time_patches=64)  # as test/models/test_eat_pretrain.py
NORM = FeatureNorm(-3.0, 2.0)
WINDOW = 32  # the tiny EAT model's training target_frames


def write_dump(d, n_per_class, seed, lengths=(48, 48, 64, 80, 10)):
    """Class c lifts mel bins [32c, 32c + 32): easy for a linear probe on the log-mel statistics."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    utts = {}
    for c, label in enumerate(LABELS):
        for i in range(n_per_class):
            T = lengths[i % len(lengths)]
            x = rng.normal(0.0, 1.0, (T, 128)).astype(np.float32) * 2 - 4.0
            x[:, 32 * c : 32 * c + 32] += 3.0
            utts[f"{label}_{i:02d}"] = (x, label)
    keys = sorted(utts)
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
        for k in keys:
            w(k, utts[k][0])
    (d / "utt2label").write_text("".join(f"{k} {utts[k][1]}\n" for k in keys))
    (d / "labels.txt").write_text("".join(f"{i} {name} {name.title()} sound\n" for i, name in enumerate(LABELS)))
    (d / "stats.json").write_text(json.dumps({"mean": NORM.mean, "std": NORM.std}))
    return d


def save_beats(path, seed=1):
    """A tiny beats_ssl model.pt (seed 1: not what --random-init's seed 0 builds)."""
    torch.manual_seed(seed)
    tok = BeatsTokenizerTask.ModelConfig(kind="random", codebook_size=16, codebook_dim=8)
    tmodel = BeatsTokenizerTask.build_model(tok, DataInfo())
    save_model(path.parent / "tok.pt", "beats_tokenizer", {"task": "beats_tokenizer", "model": dataclasses.asdict(tok)},
               tmodel.state_dict())
    cfg = BeatsSSLTask.ModelConfig(encoder=dict(BEATS_TINY), tokenizer=str(path.parent / "tok.pt"), predictor_layers=1)
    ssl = BeatsSSLTask.build_model(cfg, DataInfo())
    save_model(path, "beats_ssl", {"task": "beats_ssl", "model": dataclasses.asdict(cfg),
                                   "data": {"norm_mean": NORM.mean, "norm_std": NORM.std, "target_frames": 64}},
               ssl.state_dict())
    return path


def save_eat(path, seed=1, target_frames=WINDOW):
    torch.manual_seed(seed)
    cfg = EATPretrainConfig(**EAT_TINY)
    model = EATPretrainModel(cfg)
    data = {"norm_mean": NORM.mean, "norm_std": NORM.std, "target_frames": target_frames}
    save_model(path, "eat_pretrain", {"task": "eat_pretrain", "model": dataclasses.asdict(cfg), "data": data},
               model.state_dict())
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_recipe")
    for kind in ("beats", "eat"):
        write_dump(root / f"dump/fbank_{kind}/train", 10, seed=0)
        write_dump(root / f"dump/fbank_{kind}/dev", 4, seed=1)
        write_dump(root / f"dump/fbank_{kind}/test", 4, seed=2)
    for k in (1, 2):
        write_dump(root / f"dump/fbank_eat/fold{k}/train", 8, seed=10 + k)
        write_dump(root / f"dump/fbank_eat/fold{k}/test", 3, seed=20 + k)
    (root / "exp/beats_ssl_r1").mkdir(parents=True)
    (root / "exp/eat_pretrain").mkdir(parents=True)
    save_beats(root / "exp/beats_ssl_r1/model.pt")
    save_eat(root / "exp/eat_pretrain/model.pt")
    return root


def _clip_alone(encoder, x, layer, pad_to=None):
    """Reference: one clip through the encoder alone, mean over its real tokens."""
    T = x.shape[0]
    mask = None
    if pad_to and T < pad_to:
        x = np.concatenate([x, np.zeros((pad_to - T, x.shape[1]), dtype=np.float32)])
        mask = torch.zeros(1, pad_to, dtype=torch.bool)
        mask[:, T:] = True
    feats = normalize(torch.from_numpy(np.array(x, dtype=np.float32)), NORM)[None]
    with torch.no_grad():
        out = encoder(feats, mask, output_hidden_states=True)
    h = out.hidden_states[layer - 1][0].double()
    if out.padding_mask is not None:
        h = h[~out.padding_mask[0]]
    return h.mean(0).numpy()


@pytest.mark.parametrize("family", ["beats", "eat"])
def test_embeddings_do_not_depend_on_batch_composition(recipe, family):
    from audiossl.tasks.encoder import load_encoder

    path = recipe / ("exp/beats_ssl_r1/model.pt" if family == "beats" else "exp/eat_pretrain/model.pt")
    encoder = load_encoder(path)
    dump = recipe / f"dump/fbank_{family}/test"
    window = WINDOW if family == "eat" else None
    utts1, alone = encoder_embeddings(encoder, NORM, dump, batch_size=1, window_frames=window)
    utts8, batched = encoder_embeddings(encoder, NORM, dump, batch_size=8, window_frames=window)
    assert utts1 == utts8 == list(kaldiio.load_scp(str(dump / "feats.scp")))
    assert sorted(alone) == [1, 2]
    for layer in (1, 2):
        assert alone[layer].shape == (12, encoder.embed_dim) and alone[layer].dtype == np.float32
        assert np.isfinite(alone[layer]).all()
        np.testing.assert_allclose(batched[layer], alone[layer], rtol=1e-5, atol=1e-6)
    feats = kaldiio.load_scp(str(dump / "feats.scp"))
    # a 48-frame clip (batched with the other 48-frame clips) against its own forward pass
    utt = next(u for u in utts1 if feats[u].shape[0] == 48)
    x = np.array(feats[utt])
    if family == "beats":
        want = _clip_alone(encoder, x, 2)
    else:  # windows [0, 32) and [16, 48), averaged
        want = (_clip_alone(encoder, x[0:32], 2) + _clip_alone(encoder, x[16:48], 2)) / 2
    np.testing.assert_allclose(batched[2][utts1.index(utt)], want, rtol=1e-4, atol=1e-5)
    # only one layer asked for: the same numbers
    _, one = encoder_embeddings(encoder, NORM, dump, layers=-1, batch_size=3, window_frames=window)
    assert list(one) == [2]
    np.testing.assert_allclose(one[2], alone[2], rtol=1e-5, atol=1e-6)


def test_windows_padding_and_short_clips(recipe, tmp_path):
    from audiossl.tasks.encoder import load_encoder

    rng = np.random.default_rng(0)
    clips = {"a_long": rng.normal(-4, 2, (80, 128)), "b_partial": rng.normal(-4, 2, (40, 128)),
             "c_short": rng.normal(-4, 2, (20, 128)), "d_tiny": rng.normal(-4, 2, (10, 128))}
    dump = tmp_path / "dump"
    dump.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{dump}/feats.ark,{dump}/feats.scp") as w:
        for utt, x in clips.items():
            w(utt, x.astype(np.float32))
    clips = {u: x.astype(np.float32) for u, x in clips.items()}

    eat = load_encoder(recipe / "exp/eat_pretrain/model.pt")
    utts, emb = encoder_embeddings(eat, NORM, dump, layers=[1], window_frames=WINDOW)
    got = dict(zip(utts, emb[1]))
    x = clips["a_long"]
    want = np.mean([_clip_alone(eat, x[s : s + 32], 1) for s in (0, 16, 32, 48)], axis=0)
    np.testing.assert_allclose(got["a_long"], want, rtol=1e-4, atol=1e-5)
    # the windows of scoring: 0 and one ending at the last frame
    want = np.mean([_clip_alone(eat, clips["b_partial"][s : s + 32], 1) for s in (0, 8)], axis=0)
    np.testing.assert_allclose(got["b_partial"], want, rtol=1e-4, atol=1e-5)
    # EAT: short clips zero-padded in raw log-mel to the window, as fine-tuning and scoring feed them
    for utt in ("c_short", "d_tiny"):
        padded = _clip_alone(eat, clips[utt], 1, pad_to=WINDOW)
        np.testing.assert_allclose(got[utt], padded, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got["c_short"], _clip_alone(eat, clips["c_short"], 1), atol=1e-3)  # padding mattered
    # EAT on whole clips: a clip shorter than one patch row is padded to one row
    _, whole = encoder_embeddings(eat, NORM, dump, layers=[1], window_frames=None)
    np.testing.assert_allclose(whole[1][3], _clip_alone(eat, clips["d_tiny"], 1, pad_to=16), rtol=1e-4, atol=1e-5)

    # BEATs takes clips at their own length; the 10-frame clip is padded to one 16-frame row
    beats = load_encoder(recipe / "exp/beats_ssl_r1/model.pt")
    utts, emb = encoder_embeddings(beats, NORM, dump, layers=[2])
    got = dict(zip(utts, emb[2]))
    np.testing.assert_allclose(got["c_short"], _clip_alone(beats, clips["c_short"], 2), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["d_tiny"], _clip_alone(beats, clips["d_tiny"], 2, pad_to=16), rtol=1e-4, atol=1e-5)
    assert np.isfinite(emb[2]).all()
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        encoder_embeddings(beats, NORM, dump, layers=[3])


def test_logmel_stats_ignore_digital_silence(tmp_path):
    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(16000)
    zeros = lambda n: torch.zeros(n)  # noqa: E731
    base = torch.cat([zeros(240), tone, zeros(400)])  # already starts and ends in digital silence
    padded = torch.cat([zeros(160 * 30), base, zeros(160 * 55)])  # e.g. a clip padded to 10 s with zeros
    for kind in ("beats", "eat"):
        dump = tmp_path / kind
        dump.mkdir()
        feats = {"a_tone": compute_fbank(tone, kind), "b_base": compute_fbank(base, kind),
                 "c_padded": compute_fbank(padded, kind), "d_silent": compute_fbank(zeros(8000), kind)}
        with kaldiio.WriteHelper(f"ark,scp:{dump}/feats.ark,{dump}/feats.scp") as w:
            for utt, x in feats.items():
                w(utt, x.numpy())
        silent = digital_silence_frames(feats["c_padded"].numpy())
        # exactly the frames that hold only zero samples: 400-sample windows, 160 apart
        starts = np.arange(len(silent)) * 160
        only_zeros = (starts + 400 <= 160 * 30 + 240) | (starts >= 160 * 30 + 240 + 16000)
        np.testing.assert_array_equal(silent, only_zeros)
        assert not digital_silence_frames(feats["a_tone"].numpy()).any()
        utts, stats = logmel_stats(dump)
        assert utts == ["a_tone", "b_base", "c_padded", "d_silent"] and stats.shape == (4, 256)
        np.testing.assert_allclose(stats[2], stats[1], rtol=1e-4, atol=1e-4)
        # the unpadded clip differs only by the frames that straddle the start and end of the tone
        np.testing.assert_allclose(stats[2][:128], stats[0][:128], atol=0.6)
        # without the rule, the padding would drag the means far down
        naive = feats["c_padded"].numpy().mean(0)
        assert (stats[2][:128] - naive).mean() > 5.0
        # all silence: falls back to every frame
        np.testing.assert_allclose(stats[3][:128], np.log(np.finfo(np.float32).eps), rtol=1e-5)
        np.testing.assert_allclose(stats[3][128:], 0.0, atol=1e-6)


def test_score_dir_names_follow_stage_6():
    assert score_dir_name("dump/fbank_eat/test") == "test"
    assert score_dir_name("dump/fbank_eat/fold3/test") == "fold3_test"
    assert score_dir_name("/data/x/dump/fbank_beats/eval") == "eval"
    assert score_dir_name("somewhere/else/dev") == "dev"


def read_scores(score_dir):
    s = kaldiio.load_scp(str(score_dir / "scores.scp"))
    return {u: np.array(s[u]) for u in s}


def test_cli_beats_pretrained_and_random_init(recipe, monkeypatch, caplog):
    monkeypatch.chdir(recipe)
    caplog.set_level(logging.INFO)
    for tag, random_init in (("probe_beats", "false"), ("probe_beats_scratch", "true")):
        rc = probe_cli.main(["--model", "exp/beats_ssl_r1/model.pt", "--train", "dump/fbank_beats/train",
                             "--valid", "dump/fbank_beats/dev", "--test", "dump/fbank_beats/test",
                             "dump/fbank_eat/train", "--out", f"exp/{tag}", "--random-init", random_init,
                             "--device", "cpu", "--l2-grid", "1e-3,1e-1,10"])
        assert rc == 0
    pre = json.loads((recipe / "exp/probe_beats/probe.json").read_text())
    scratch = json.loads((recipe / "exp/probe_beats_scratch/probe.json").read_text())
    assert pre["random_init"] is False and scratch["random_init"] is True
    assert pre["model"] == "exp/beats_ssl_r1/model.pt" and pre["method"] == "linear_probe"
    assert pre["encoder_task"] == "beats_ssl" and pre["encoder"] == {"num_layers": 2, "embed_dim": 64}
    assert pre["layer"] in (1, 2) and set(pre["valid_metric_per_layer"]) == {"1", "2"}
    assert pre["valid_metric"] == "acc" and pre["l2"] in (1e-3, 1e-1, 10.0)
    assert pre["feature_dim"] == 64 and pre["num_train"] == 30 and pre["num_valid"] == 12
    assert pre["valid"] == "dump/fbank_beats/dev" and pre["valid_held_out"] is None
    assert pre["window_frames"] == 0  # BEATs: whole clips (its SSL target_frames is not used)
    assert set(pre["tests"]) == {"test", "train"}
    assert (recipe / "exp/probe_beats/scores/train/metrics.json").is_file()
    m = json.loads((recipe / "exp/probe_beats/scores/test/metrics.json").read_text())
    assert m["num_utts"] == 12 and m["multi_label"] is False and 0.0 <= m["acc"] <= 1.0
    assert m["model"] == "exp/beats_ssl_r1/model.pt" and m["data"] == "dump/fbank_beats/test"
    assert m["probe"]["layer"] == pre["layer"] and m["random_init"] is False and m["git_commit"]
    assert (recipe / "exp/probe_beats/scores/test/confusion.tsv").is_file()
    per_class = (recipe / "exp/probe_beats/scores/test/per_class.tsv").read_text().splitlines()
    assert per_class[1].split("\t")[:3] == ["0", "dog", "Dog sound"]
    # random weights give other embeddings, so other scores
    a, b = read_scores(recipe / "exp/probe_beats/scores/test"), read_scores(recipe / "exp/probe_beats_scratch/scores/test")
    assert sorted(a) == sorted(b) and not np.allclose(np.stack(list(a.values())), np.stack(list(b.values())), atol=1e-3)
    np.testing.assert_allclose(np.stack(list(a.values())).sum(1), 1.0, rtol=1e-5)
    from audiossl.bin.probe import load_probe_encoder

    enc_pre = load_probe_encoder("exp/beats_ssl_r1/model.pt", False, 0, None, None)[0]
    enc_rnd = load_probe_encoder("exp/beats_ssl_r1/model.pt", True, 0, None, None)[0]
    enc_rnd2 = load_probe_encoder("exp/beats_ssl_r1/model.pt", True, 0, None, None)[0]
    _, e_pre = encoder_embeddings(enc_pre, NORM, "dump/fbank_beats/test", layers=[2])
    _, e_rnd = encoder_embeddings(enc_rnd, NORM, "dump/fbank_beats/test", layers=[2])
    _, e_rnd2 = encoder_embeddings(enc_rnd2, NORM, "dump/fbank_beats/test", layers=[2])
    assert not np.allclose(e_pre[2], e_rnd[2], atol=1e-3)
    np.testing.assert_array_equal(e_rnd[2], e_rnd2[2])  # seeded
    assert "embedded 12 clips" in caplog.text and "layer 1: valid acc" in caplog.text


def test_cli_eat_holds_out_when_valid_is_a_test_set(recipe, monkeypatch, caplog):
    monkeypatch.chdir(recipe)
    caplog.set_level(logging.INFO)
    rc = probe_cli.main(["--model", "exp/eat_pretrain/model.pt", "--train", "dump/fbank_eat/train",
                         "--valid", "dump/fbank_eat/test", "--test", "dump/fbank_eat/test", "--out", "exp/probe_eat",
                         "--layer", "2", "--device", "cpu", "--batch-size", "5"])
    assert rc == 0
    p = json.loads((recipe / "exp/probe_eat/probe.json").read_text())
    assert p["layer"] == 2 and list(p["valid_metric_per_layer"]) == ["2"]
    assert p["window_frames"] == WINDOW and p["pad_to_window"] is True  # the model's target_frames
    assert p["valid"] is None and p["valid_held_out"] == 0.2
    assert p["num_train"] == 24 and p["num_valid"] == 6 and p["num_fit"] == 30  # 2 of 10 per class held out
    assert p["encoder_task"] == "eat_pretrain" and p["encoder"] == {"num_layers": 2, "embed_dim": 32}
    assert "holding out a stratified 20%" in caplog.text and "is a test dump" in caplog.text
    m = json.loads((recipe / "exp/probe_eat/scores/test/metrics.json").read_text())
    assert m["num_utts"] == 12 and "acc" in m and m["window_frames"] == WINDOW
    # a model.pt without data.target_frames: EAT needs to be told its window
    save_eat(recipe / "exp/eat_nolen.pt", target_frames=None)
    with pytest.raises(ValueError, match="--window-frames"):
        probe_cli.main(["--model", "exp/eat_nolen.pt", "--train", "dump/fbank_eat/train", "--test",
                        "dump/fbank_eat/test", "--out", "exp/x", "--device", "cpu"])


def test_cli_fine_tuned_model(recipe, monkeypatch):
    """A fine-tuned model.pt is probed through its encoder; --random-init rebuilds that encoder."""
    from audiossl.tasks.abs_task import get_task
    from audiossl.train.config import plain as _plain
    from audiossl.tasks.finetune import FinetuneConfig

    monkeypatch.chdir(recipe)
    cfg = FinetuneConfig(init="exp/eat_pretrain/model.pt", pooling="cls", head_norm=True, loss="ce")
    model = get_task("finetune").build_model(cfg, DataInfo(num_classes=3, label_names=LABELS))
    save_model("exp/finetune_eat_ft/model.pt", "finetune",
               {"task": "finetune", "model": _plain(cfg), "data": {"target_frames": 48, "norm_mean": NORM.mean,
                                                                   "norm_std": NORM.std}},
               model.state_dict(), model.export())
    for tag, ri in (("probe_ft", "false"), ("probe_ft_scratch", "true")):
        assert probe_cli.main(["--model", "exp/finetune_eat_ft/model.pt", "--train", "dump/fbank_eat/train",
                               "--test", "dump/fbank_eat/test", "--out", f"exp/{tag}", "--device", "cpu",
                               "--random-init", ri, "--l2-grid", "0.1"]) == 0
    p = json.loads((recipe / "exp/probe_ft/probe.json").read_text())
    assert p["encoder_task"] == "eat_pretrain" and p["window_frames"] == 48 and p["random_init"] is False
    a = read_scores(recipe / "exp/probe_ft/scores/test")
    b = read_scores(recipe / "exp/probe_ft_scratch/scores/test")
    assert not np.allclose(np.stack(list(a.values())), np.stack(list(b.values())), atol=1e-4)


def test_cli_baseline(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    rc = probe_cli.main(["--baseline", "logmel", "--train", "dump/fbank_eat/train", "--test", "dump/fbank_eat/test",
                         "--out", "exp/baseline_logmel", "--device", "cpu"])
    assert rc == 0
    p = json.loads((recipe / "exp/baseline_logmel/probe.json").read_text())
    assert p["method"] == "baseline_logmel" and p["model"] is None and p["feature_dim"] == 256
    assert p["layer"] == "logmel" and p["valid_held_out"] == 0.2
    m = json.loads((recipe / "exp/baseline_logmel/scores/test/metrics.json").read_text())
    assert m["acc"] >= 0.9  # the classes differ in their mean log-mel: the baseline sees that
    probe = np.load(recipe / "exp/baseline_logmel/probe.npz")
    assert probe["weight"].shape == (256, 3) and list(probe["label_names"]) == LABELS


def test_run_probe_multi_label(tmp_path):
    """Clips with several labels: one-vs-rest sigmoid probe chosen by mAP, mAP-only score dirs."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 60), ("test", 30)):
        d = tmp_path / name
        d.mkdir()
        y = rng.random((n, 3)) < 0.4
        y[np.arange(n), rng.integers(0, 3, n)] = True  # every clip has a label, many have two or three
        x = rng.normal(0, 1, (n, 5)) + 2.0 * np.pad(y, ((0, 0), (0, 2)))
        np.save(d / "x.npy", x)
        (d / "feats.scp").write_text("")
        (d / "utt2label").write_text("".join(f"u{i:03d} " + " ".join(LABELS[c] for c in np.flatnonzero(y[i])) + "\n"
                                             for i in range(n)))
        (d / "labels.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(LABELS)))

    def features(d):
        x = np.load(d / "x.npy")
        return [f"u{i:03d}" for i in range(len(x))], {"raw": x, "noise": rng.normal(0, 1, x.shape)}

    report = run_probe(features, tmp_path / "train", [tmp_path / "test"], tmp_path / "out", l2_grid=(1e-2, 1.0))
    assert report["multi_label"] is True and report["valid_metric"] == "mAP"
    assert report["layer"] == "raw"  # the informative features win on the validation mAP
    assert report["num_train"] + report["num_valid"] == 60 and report["valid_held_out"] == 0.2
    m = json.loads((tmp_path / "out/scores/test/metrics.json").read_text())
    assert m["multi_label"] is True and "acc" not in m and m["mAP"] > 0.8
    assert not (tmp_path / "out/scores/test/confusion.tsv").exists()


def test_errors_name_the_problem(recipe, monkeypatch, tmp_path):
    monkeypatch.chdir(recipe)
    bad = tmp_path / "nolabels"
    shutil.copytree(recipe / "dump/fbank_eat/test", bad)
    (bad / "utt2label").unlink()
    with pytest.raises(FileNotFoundError, match="nolabels/utt2label"):
        probe_cli.main(["--baseline", "logmel", "--train", str(bad), "--test", "dump/fbank_eat/test", "--out", "exp/y"])
    task = "test_probe_no_encoder"
    if task not in TASKS:

        @register_task(task)
        class NoEncoder(AbsTask):
            ModelConfig = dict

            @classmethod
            def build_model(cls, model_cfg, data_info):
                return AbsTrainModel()

    save_model(tmp_path / "noenc.pt", task, {"task": task, "model": {}}, {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="no encoder to probe"):
        probe_cli.main(["--model", str(tmp_path / "noenc.pt"), "--train", "dump/fbank_eat/train",
                        "--test", "dump/fbank_eat/test", "--out", "exp/z", "--device", "cpu"])
    save_model(tmp_path / "noweights.pt", "eat_pretrain", {"task": "eat_pretrain", "model": EAT_TINY}, {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="no encoder.. weights"):
        probe_cli.main(["--model", str(tmp_path / "noweights.pt"), "--train", "dump/fbank_eat/train",
                        "--test", "dump/fbank_eat/test", "--out", "exp/z", "--device", "cpu"])
    assert probe_cli.main(["--baseline", "logmel", "--random-init", "true", "--train", "a", "--test", "b", "--out", "c"]) == 2
    with pytest.raises(SystemExit):
        probe_cli.main(["--model", "m.pt", "--baseline", "logmel", "--train", "a", "--test", "b", "--out", "c"])


def test_probe_folds_average_and_results_md(recipe, monkeypatch):
    """ESC-50 style: each fold validates on (a held-out part of) its train, CV average with
    bin/score --cv, and RESULTS.md shows fine-tune, probe, scratch and baseline rows."""
    monkeypatch.chdir(recipe)
    for tag, extra in (("probe_eat", []), ("probe_eat_scratch", ["--random-init", "true"]), ("baseline_logmel", None)):
        dirs = []
        for k in (1, 2):
            src = ["--baseline", "logmel"] if extra is None else ["--model", "exp/eat_pretrain/model.pt", *extra]
            out = f"exp/{tag}_fold{k}"
            assert probe_cli.main([*src, "--train", f"dump/fbank_eat/fold{k}/train", "--valid", f"dump/fbank_eat/fold{k}/test",
                                   "--test", f"dump/fbank_eat/fold{k}/test", "--out", out, "--device", "cpu",
                                   "--l2-grid", "1e-2,1"]) == 0
            dirs.append(f"{out}/scores/fold{k}_test")
            assert (recipe / dirs[-1] / "metrics.json").is_file()
        assert score_cli.main(["--cv", *dirs, "--out", f"exp/{tag}_cv"]) == 0
        cv = json.loads((recipe / f"exp/{tag}_cv/metrics.json").read_text())
        assert cv["num_folds"] == 2 and cv["num_utts"] == 18 and "acc" in cv["std"]
        folds = [json.loads((recipe / d / "metrics.json").read_text())["acc"] for d in dirs]
        assert cv["acc"] == pytest.approx(np.mean(folds))
    # a fine-tuning row and its scratch control, to sit beside the probes
    from audiossl.score.inference import ScoreResult
    from audiossl.score.results import write_score_dir

    for tag, init in (("finetune_eat", "exp/eat_pretrain/model.pt"), ("finetune_eat_scratch", None)):
        t = np.eye(3)[[0, 1, 2, 0]]
        write_score_dir(ScoreResult([f"u{i}" for i in range(4)], t.astype(np.float32), t.astype(np.float32), LABELS,
                                    LABELS, np.ones(4, dtype=int)), recipe / f"exp/{tag}/scores/test", False)
        (recipe / f"exp/{tag}/config.yaml").write_text(
            f"task: finetune\nmodel: {{init: {init or 'null'}, encoder_task: eat_pretrain, encoder: {json.dumps(EAT_TINY)}}}\n"
            "data: {train: dump/fbank_eat/train}\n")
    assert make_results_cli.main(["--exp", "exp", "--out", "RESULTS.md", "--recipe", "esc50", "--plots", "false"]) == 0
    text = (recipe / "RESULTS.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| model")]
    tags = [ln.split(" | ")[0][2:] for ln in lines[1:] if ln.split(" | ")[0][2:] in {
        "finetune_eat", "finetune_eat_scratch", "probe_eat_fold1", "probe_eat_scratch_fold1", "probe_eat_fold2",
        "probe_eat_scratch_fold2", "probe_eat_cv", "probe_eat_scratch_cv", "baseline_logmel_cv", "baseline_logmel_fold1"}]
    # pre-trained and scratch rows of one model next to each other; fine-tune, probe, baseline in order
    assert tags == ["finetune_eat", "finetune_eat_scratch", "probe_eat_fold1", "probe_eat_scratch_fold1",
                    "probe_eat_fold2", "probe_eat_scratch_fold2", "probe_eat_cv", "probe_eat_scratch_cv",
                    "baseline_logmel_fold1", "baseline_logmel_cv"]
    row = {ln.split(" | ")[0][2:]: ln for ln in lines}
    assert "| fine-tune | pre-trained | test | ESC-50 | acc | 100.00 |" in row["finetune_eat"]
    assert "| fine-tune | random (scratch) | test |" in row["finetune_eat_scratch"]
    assert "| linear probe | pre-trained | fold1_test | ESC-50 | acc |" in row["probe_eat_fold1"]
    assert "| linear probe | random (scratch) | cv | ESC-50 | acc |" in row["probe_eat_scratch_cv"]
    assert "(2 folds)" in row["probe_eat_cv"] and "`exp/probe_eat_fold1/probe.json`" in row["probe_eat_cv"]
    assert "`exp/eat_pretrain/model.pt`" in row["probe_eat_cv"]
    assert "| trivial baseline | - | cv |" in row["baseline_logmel_cv"]
    assert "`exp/baseline_logmel_fold1/probe.json`" in row["baseline_logmel_fold1"]
    cv = json.loads((recipe / "exp/probe_eat_cv/metrics.json").read_text())
    assert f"| {100 * cv['acc']:.2f} ± {100 * cv['std']['acc']:.2f} (2 folds) |" in row["probe_eat_cv"]
    # tiny models, 2 folds: no published number anywhere
    for ln in row.values():
        if ln.split(" | ")[0][2:] in tags:
            assert ln.split(" | ")[7] == "-", ln
