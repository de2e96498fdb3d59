"""End to end on a tiny kaldiio dump: pre-trained model.pt -> fine-tuning with the real trainer ->
bin/score -> metrics/scores/per-class/confusion files; ESC-50 style CV averaging; RESULTS.md + plots."""
import dataclasses
import json
from dataclasses import dataclass

import kaldiio
import numpy as np
import pytest
import torch
from torch import nn

from audiossl.bin import make_results as make_results_cli
from audiossl.bin import score as score_cli
from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput
from audiossl.score.inference import ScoreResult
from audiossl.score.metrics import compute_metrics
from audiossl.score.results import write_score_dir
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.tasks.abs_task import TASKS, AbsTask, register_task
from audiossl.models.checkpoint import load_model, save_model
from audiossl.train.config import config_from_dict
from audiossl.train.trainer import train

torch.set_num_threads(1)

TASK = "test_score_pretrain_tiny"
LABELS = ["dog", "rain", "siren"]
FEAT_DIM = 12


@dataclass
class TinyConfig:
    dim: int = 16
    patch: int = 4


class TinyEncoder(AbsEncoder):
    """Patches of 4 frames -> Linear -> one residual MLP block; mean-pooling friendly padding mask."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.embed_dim, self.num_layers = cfg, cfg.dim, 1
        self.patch_embed = nn.Linear(cfg.patch * FEAT_DIM, cfg.dim)
        self.block = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, cfg.dim), nn.GELU())

    def forward(self, feats, padding_mask=None, output_hidden_states=False):
        B, T, F = feats.shape
        p = self.cfg.patch
        n = T // p
        x = self.patch_embed(feats[:, : n * p].reshape(B, n, p * F))  # (B, n, D)
        x = x + self.block(x)
        mask = padding_mask[:, : n * p].reshape(B, n, p).all(-1) if padding_mask is not None else None
        return EncoderOutput(tokens=x, padding_mask=mask)

    def layer_id(self, name):
        return 1 if name.startswith("block.") else 0


class TinyPretrain(AbsTrainModel):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = TinyEncoder(cfg)


if TASK not in TASKS:

    @register_task(TASK)
    class TinyTask(AbsTask):
        ModelConfig = TinyConfig

        @classmethod
        def build_model(cls, model_cfg, data_info):
            return TinyPretrain(model_cfg)

        @classmethod
        def build_encoder(cls, model_cfg):
            return TinyEncoder(model_cfg)


def write_dump(d, n_per_class, seed, long_clip=False):
    """Class c lifts mel bins [4c, 4c + 4): a learnable single-label corpus."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    utts = {}
    for c, label in enumerate(LABELS):
        for i in range(n_per_class):
            T = int(rng.integers(20, 40))
            if long_clip and i == 0:
                T = 100  # longer than the training window: scored in sliding windows
            x = rng.normal(0.0, 1.0, (T, FEAT_DIM)).astype(np.float32) - 3.0
            x[:, 4 * c : 4 * c + 4] += 3.0
            utts[f"{label}_{i:02d}"] = (x, label)
    keys = sorted(utts)
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
        for k in keys:
            w(k, utts[k][0])
    (d / "utt2label").write_text("".join(f"{k} {utts[k][1]}\n" for k in keys))
    (d / "labels.txt").write_text("".join(f"{i} {name} {name.title()} sound\n" for i, name in enumerate(LABELS)))
    allx = np.concatenate([utts[k][0] for k in keys])
    (d / "stats.json").write_text(json.dumps({"mean": float(allx.mean()), "std": float(allx.std()), "num_frames": len(allx)}))
    return d


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe dir with dumps, a pre-trained model.pt and a fine-tuned exp/finetune_tiny."""
    root = tmp_path_factory.mktemp("recipe")
    write_dump(root / "dump" / "train", 16, seed=0)
    write_dump(root / "dump" / "test", 4, seed=1, long_clip=True)
    torch.manual_seed(0)
    pre = TinyPretrain(TinyConfig())
    save_model(root / "exp" / "pretrain" / "model.pt", TASK, {"task": TASK, "model": dataclasses.asdict(TinyConfig())},
               pre.state_dict())
    raw = {
        "task": "finetune",
        "model": {"init": str(root / "exp" / "pretrain" / "model.pt"), "pooling": "mean", "loss": "ce",
                  "head_init_std": 0.02, "label_smoothing": 0.1, "specaug_mask_ratio": 0.1, "roll": True},
        "data": {"train": str(root / "dump" / "train"), "valid": str(root / "dump" / "test"), "target_frames": 32,
                 "batch_size": 8, "num_workers": 0},
        "optim": {"lr": 1e-2, "warmup_updates": 5, "max_updates": 60, "weight_decay": 0.01},
        "trainer": {"log_interval": 20, "valid_interval": 60, "save_interval": 60, "best_metric": "acc",
                    "best_mode": "max", "seed": 0},
    }
    result = train(config_from_dict(raw), root / "exp" / "finetune_tiny", device="cpu")
    assert result.model_path is not None
    return root


def test_score_cli_end_to_end(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    out = recipe / "exp" / "finetune_tiny" / "scores" / "test"
    rc = score_cli.main(["--model", "exp/finetune_tiny/model.pt", "--data", "dump/test", "--out", str(out),
                         "--hop-frames", "16", "--device", "cpu"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["window_frames"] == 32  # the training target_frames
    assert metrics["num_utts"] == 12 and metrics["multi_label"] is False
    assert metrics["acc"] >= 0.75  # the corpus is easy and the model trained
    # Scores read back with kaldiio reproduce the metrics; they are softmax rows.
    scores = kaldiio.load_scp(str(out / "scores.scp"))
    utts = sorted(scores)
    S = np.stack([scores[u] for u in utts])
    np.testing.assert_allclose(S.sum(1), 1.0, rtol=1e-5)
    T = np.stack([np.eye(3)[LABELS.index(u.split("_")[0])] for u in utts])
    again = compute_metrics(S, T, multi_label=False)
    assert again["acc"] == pytest.approx(metrics["acc"]) and again["mAP"] == pytest.approx(metrics["mAP"])
    per_class = (out / "per_class.tsv").read_text().splitlines()
    assert per_class[0].split("\t") == ["index", "label", "name", "positives", "AP", "AUC"]
    assert [ln.split("\t")[1] for ln in per_class[1:]] == LABELS
    assert per_class[1].split("\t")[2] == "Dog sound" and per_class[1].split("\t")[3] == "4"
    confusion = (out / "confusion.tsv").read_text().splitlines()
    cm = np.array([[int(v) for v in ln.split("\t")[1:]] for ln in confusion[1:]])
    assert cm.sum() == 12 and np.trace(cm) / 12 == pytest.approx(metrics["acc"])
    assert metrics["git_commit"]


def test_the_fine_tuned_config_describes_the_encoder(recipe):
    obj = load_model(recipe / "exp" / "finetune_tiny" / "model.pt")
    assert obj["task"] == "finetune"
    assert obj["config"]["model"]["encoder_task"] == TASK
    assert obj["config"]["model"]["encoder"] == {"dim": 16, "patch": 4}
    assert obj["extra"]["label_names"] == LABELS and obj["extra"]["pooling"] == "mean"
    assert set(obj["model"]) >= {"encoder.patch_embed.weight", "head.weight", "head.bias"}


def fold_dir(path, acc_hits, seed):
    """A single-label score dir whose accuracy is acc_hits / 4 (written through write_score_dir)."""
    targets = np.eye(2)[[0, 0, 1, 1]]
    scores = targets.copy()
    for i in range(4 - acc_hits):
        scores[i] = 1 - scores[i]
    res = ScoreResult([f"u{i}" for i in range(4)], scores.astype(np.float32), targets.astype(np.float32),
                      ["a", "b"], ["a", "b"], np.ones(4, dtype=int))
    write_score_dir(res, path, multi_label=False, info={"git_commit": "abc123"})
    return path


def test_cv_aggregation(tmp_path):
    dirs = [str(fold_dir(tmp_path / f"f{k}", hits, k)) for k, hits in enumerate([4, 3, 2], start=1)]
    assert score_cli.main(["--cv", *dirs, "--out", str(tmp_path / "cv")]) == 0
    cv = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert cv["kind"] == "cv" and cv["num_folds"] == 3
    assert cv["acc"] == pytest.approx(0.75)
    assert cv["std"]["acc"] == pytest.approx(0.25)  # sample std of 1, 0.75, 0.5
    assert cv["per_fold"]["acc"] == [1.0, 0.75, 0.5]
    assert cv["num_utts"] == 12 and cv["git_commit"] == "abc123"
    assert score_cli.main(["--cv", dirs[0], "--model", "x.pt", "--out", str(tmp_path / "bad")]) == 2


def test_make_results_writes_results_md_and_plots(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    out = recipe / "exp" / "finetune_tiny" / "scores" / "test"
    if not (out / "metrics.json").is_file():
        score_cli.main(["--model", "exp/finetune_tiny/model.pt", "--data", "dump/test", "--out", str(out)])
    fold_dir(recipe / "exp" / "finetune_tiny_fold1" / "scores" / "test", 4, 1)
    (recipe / "exp" / "finetune_tiny_fold1" / "config.yaml").write_text(
        "task: finetune\nmodel: {init: ../audioset/exp/eat_pretrain/model.pt, encoder_task: eat_pretrain}\n"
        "data: {train: dump/fbank_eat/fold1/train}\n")
    fold_dir(recipe / "exp" / "finetune_tiny_fold2" / "scores" / "test", 2, 2)
    score_cli.main(["--cv", "exp/finetune_tiny_fold1/scores/test", "exp/finetune_tiny_fold2/scores/test",
                    "--out", "exp/finetune_tiny_cv"])
    assert make_results_cli.main(["--exp", "exp", "--out", "RESULTS.md", "--recipe", "esc50"]) == 0
    text = (recipe / "RESULTS.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    row = next(ln for ln in text.splitlines() if ln.startswith("| finetune_tiny | fine-tune | pre-trained | test |"))
    assert f"| {100 * metrics['acc']:.2f} |" in row and "| ESC-50 | acc |" in row
    assert "`exp/finetune_tiny/config.yaml`" in row and "exp/pretrain/model.pt" in row
    cv_row = next(ln for ln in text.splitlines() if ln.startswith("| finetune_tiny_cv | fine-tune | pre-trained | cv |"))
    assert "| 75.00 ± 35.36 (2 folds) |" in cv_row
    # The CV average takes its provenance from its first fold.
    assert "`exp/finetune_tiny_fold1/config.yaml`" in cv_row and "`../audioset/exp/eat_pretrain/model.pt`" in cv_row
    # Not the paper's setting (2 folds, an encoder of unknown size): no published number beside it.
    assert cv_row.split(" | ")[7] == "-" and row.split(" | ")[7] == "-"
    lines = text.splitlines()
    assert lines.index(row) < lines.index(next(ln for ln in lines if ln.startswith("| finetune_tiny_fold1 |"))) < lines.index(cv_row)
    assert "| EAT-base (10 epochs) | 48.6 | 40.3 | 96.0 | 98.3 |" in text
    assert "| BEATs iter3 | 48.0 | 38.3 | 95.6 | 98.3 |" in text
    for name in ("per_class_ap_test.png", "confusion_test.png"):
        png = recipe / "exp" / "finetune_tiny" / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{name}" in text


def test_cli_help_and_usage_errors(capsys):
    for cli in (score_cli, make_results_cli):
        with pytest.raises(SystemExit) as done:
            cli.main(["--help"])
        assert done.value.code == 0
        assert "Usage:" in capsys.readouterr().out
    assert score_cli.main(["--out", "x"]) == 2  # neither --model/--data nor --cv
    assert "give --model and --data" in capsys.readouterr().err


PAPER_EAT = {"embed_dim": 768, "depth": 12, "num_heads": 12}
TINY_EAT = {"embed_dim": 32, "depth": 2, "num_heads": 4}


def _finetune_exp(root, tag, init, encoder_task, encoder, train, set_name="test", hits=4):
    fold_dir(root / "exp" / tag / "scores" / set_name, hits, 0)
    (root / "exp" / tag / "config.yaml").write_text(json.dumps(
        {"task": "finetune", "model": {"init": init, "encoder_task": encoder_task, "encoder": encoder},
         "data": {"train": train}}))


def _cv(root, tag, folds):
    dirs = [str(root / "exp" / f"{tag}_fold{k}" / "scores" / f"fold{k}_test") for k in folds]
    assert score_cli.main(["--cv", *dirs, "--out", str(root / "exp" / f"{tag}_cv")]) == 0


def _published(text, tag, test_set):
    row = next(ln for ln in text.splitlines() if ln.startswith(f"| {tag} |") and f"| {test_set} |" in ln)
    return row.split(" | ")[7]


def test_published_numbers_only_in_the_papers_setting(tmp_path):
    from audiossl.score.results import collect_results, render_results_md

    # ESC-50: a paper-size EAT, 5 folds -> EAT's number; 2 folds, a tiny encoder, a scratch control or
    # a linear probe of the same model -> none.
    esc = tmp_path / "esc50"
    for tag, enc, init, folds in (("finetune_eat", PAPER_EAT, "../audioset/exp/eat_pretrain/model.pt", 5),
                                  ("finetune_eatfew", PAPER_EAT, "../audioset/exp/eat_pretrain/model.pt", 2),
                                  ("finetune_tiny", TINY_EAT, "../audioset/exp/eat_pretrain/model.pt", 5),
                                  ("finetune_eat_scratch", PAPER_EAT, None, 5)):
        for k in range(1, folds + 1):
            _finetune_exp(esc, f"{tag}_fold{k}", init, "eat_pretrain", enc, f"dump/fbank_eat/fold{k}/train", f"fold{k}_test")
        _cv(esc, tag, range(1, folds + 1))
    for k in range(1, 6):
        fold_dir(esc / "exp" / f"probe_eat_fold{k}" / "scores" / f"fold{k}_test", 4, k)
        (esc / "exp" / f"probe_eat_fold{k}" / "probe.json").write_text(json.dumps(
            {"method": "linear_probe", "model": "../audioset/exp/eat_pretrain/model.pt", "random_init": False,
             "encoder_task": "eat_pretrain", "encoder": {"num_layers": 12, "embed_dim": 768},
             "train": f"dump/fbank_eat/fold{k}/train"}))
    _cv(esc, "probe_eat", range(1, 6))
    text = render_results_md(collect_results(esc / "exp"), "esc50", esc, commit="abc")
    assert _published(text, "finetune_eat_cv", "cv") == "96.0 (EAT-base (10 epochs))"
    assert _published(text, "finetune_eat_fold1", "fold1_test") == "-"  # one fold is not the protocol
    assert _published(text, "finetune_eatfew_cv", "cv") == "-"
    assert _published(text, "finetune_tiny_cv", "cv") == "-"  # a 2 x 32 encoder
    assert _published(text, "finetune_eat_scratch_cv", "cv") == "-"
    assert "| random (scratch) | cv |" in next(ln for ln in text.splitlines() if ln.startswith("| finetune_eat_scratch_cv |"))
    assert _published(text, "probe_eat_cv", "cv") == "-"
    # the same paper-size model in the mini recipe (another corpus): no benchmark, no number
    mini = render_results_md(collect_results(esc / "exp"), "mini", esc, commit="abc")
    assert "96.0 (EAT" not in mini.split("## Published numbers")[0]

    # AudioSet: BEATs round 2, paper size, AS-20K on eval -> BEATs iter2's number; another test set -> none.
    aus = tmp_path / "audioset"
    beats = {"encoder": {"encoder_layers": 12, "encoder_embed_dim": 768, "embed_dim": 512}, "tokenizer": None}
    _finetune_exp(aus, "finetune_beats", "exp/beats_ssl_r2/model.pt", "beats_ssl", beats,
                  "dump/fbank_beats/balanced_train", "eval")
    fold_dir(aus / "exp" / "finetune_beats" / "scores" / "eval_small", 4, 0)
    small = {"encoder": {"encoder_layers": 2, "encoder_embed_dim": 64, "embed_dim": 32}}
    _finetune_exp(aus, "finetune_beatsmall", "exp/beats_ssl_r2/model.pt", "beats_ssl", small,
                  "dump/fbank_beats/balanced_train", "eval")
    text = render_results_md(collect_results(aus / "exp"), "audioset", aus, commit="abc")
    assert _published(text, "finetune_beats", "eval") == "38.3 (BEATs iter2)"
    assert "| AS-20K | mAP |" in next(ln for ln in text.splitlines() if ln.startswith("| finetune_beats |"))
    assert _published(text, "finetune_beats", "eval_small") == "-"
    assert _published(text, "finetune_beatsmall", "eval") == "-"


def test_benchmark_and_paper_row_rules():
    from audiossl.score.results import encoder_shape, guess_benchmark, official_protocol, paper_row_for

    assert guess_benchmark("esc50", "dump/fbank_eat/fold1/train", "dump/fbank_eat/fold1/test") == "ESC-50"
    assert guess_benchmark("spc2", "dump/fbank_eat/train", "dump/fbank_eat/test") == "SPC-2"
    assert guess_benchmark("audioset", "dump/fbank_eat/balanced_train", "dump/fbank_eat/eval") == "AS-20K"
    assert guess_benchmark("audioset", "dump/fbank_eat/unbalanced_train", "dump/fbank_eat/eval") == "AS-2M"
    assert guess_benchmark("audioset", "dump/fbank_eat/train_as2m", "dump/fbank_eat/eval") == "AS-2M"
    assert guess_benchmark("mini", "dump/fbank_eat/train", "dump/fbank_eat/eval") is None
    assert guess_benchmark("rescue", "dump/fbank_eat/train", "dump/fbank_eat/test") is None  # no "esc" substring match
    assert official_protocol("ESC-50", "cv", {"kind": "cv", "num_folds": 5})
    assert not official_protocol("ESC-50", "cv", {"kind": "cv", "num_folds": 4})
    assert not official_protocol("ESC-50", "fold1_test", {})
    assert official_protocol("AS-20K", "eval", {}) and not official_protocol("AS-20K", "test", {})
    assert official_protocol("SPC-2", "test", {}) and not official_protocol("SPC-2", "valid", {})
    assert encoder_shape(PAPER_EAT) == (12, 768) and encoder_shape({"encoder": {"encoder_layers": 12}}) is None
    assert encoder_shape({"encoder": {"encoder_layers": 12, "encoder_embed_dim": 768, "embed_dim": 512}}) == (12, 768)
    assert paper_row_for("eat_pretrain", "x", (12, 768)) == "EAT-base (10 epochs)"
    assert paper_row_for("beats_ssl", "exp/beats_ssl_r1/model.pt", (12, 768)) == "BEATs iter1"
    assert paper_row_for("eat_pretrain", "x", (2, 32)) is None and paper_row_for("eat_pretrain", "x", None) is None
