"""audiossl.bin.plot_training and the metrics readers: PNG curves from metrics.jsonl or TensorBoard."""
from __future__ import annotations

import json

from audiossl.bin import plot_training
from audiossl.train.logging import MetricsWriter, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_plot_training_writes_pngs(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    write_jsonl(exp / "metrics.jsonl", [
        {"split": "train", "update": u, "epoch": 1, "time": 0.0, "loss": 1.0 / u, "lr": 1e-3} for u in range(1, 6)
    ] + [{"split": "valid", "update": 5, "epoch": 1, "time": 0.0, "loss": 0.3, "mAP": 0.4}])
    assert plot_training.main([str(exp), "--out", str(tmp_path / "plots")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["loss.png", "lr.png", "mAP.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == PNG_MAGIC for p in pngs)


def test_missing_logs_fail_with_message(tmp_path, caplog):
    assert plot_training.main([str(tmp_path)]) == 1
    assert "neither metrics.jsonl nor tensorboard" in caplog.text


def test_resumed_runs_keep_the_last_value_per_update(tmp_path):
    write_jsonl(tmp_path / "metrics.jsonl", [
        {"split": "train", "update": 1, "loss": 5.0},
        {"split": "train", "update": 2, "loss": 4.0},  # written before a crash ...
        {"split": "train", "update": 2, "loss": 3.0},  # ... and again after the resume
    ])
    (tmp_path / "metrics.jsonl").open("a").write('{"split": "train", "upd')  # a line cut by a kill
    assert read_metrics(tmp_path) == {"train": {"loss": [(1, 5.0), (2, 3.0)]}}


def test_writer_truncates_on_resume_and_tensorboard_fallback(tmp_path):
    w = MetricsWriter(tmp_path)
    for u in (1, 2, 3):
        w.write("train", u, 1, {"loss": float(u)})
    w.close()
    w = MetricsWriter(tmp_path, resume_update=2)  # resumed from update 2: update 3 is gone
    w.write("valid", 2, 1, {"acc": 0.5})
    w.close()
    assert read_metrics(tmp_path) == {"train": {"loss": [(1, 1.0), (2, 2.0)]}, "valid": {"acc": [(2, 0.5)]}}
    (tmp_path / "metrics.jsonl").unlink()
    tb = read_metrics(tmp_path)  # from the event files
    assert tb["train"]["loss"] == [(1, 1.0), (2, 2.0)] and tb["valid"]["acc"] == [(2, 0.5)]
