"""Preemption at the edges of a training: stop signals during start-up (directly, through run.pl and
through queue.pl on the real Slurm), ``--nproc 2`` launches stopped while the workers start and
mid-training, workers that die with their launcher, one training per exp dir, temporary files of a
killed save, a disk that fills up while saving."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_testlib import make_dump, max_abs_diff, state_of, toy_config, write_config  # noqa: E402

from audiossl.tasks.toy import ToyClassifier  # noqa: E402
from audiossl.models.checkpoint import WriteError  # noqa: E402
from audiossl.train.checkpoint import load_checkpoint  # noqa: E402
from audiossl.train.config import config_from_dict  # noqa: E402
from audiossl.train.lock import ExpDirBusy, ExpDirLock  # noqa: E402
from audiossl.train import signals  # noqa: E402
from audiossl.train.signals import EXIT_REQUEUE  # noqa: E402
from audiossl.train.trainer import TrainingInterrupted, train  # noqa: E402

TRAIN = [sys.executable, "-m", "audiossl.bin.train"]


REPO = Path(__file__).resolve().parents[2]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def data(tmp_path):
    make_dump(tmp_path / "train", num_utts=24, frames=(30, 60), seed=0)
    make_dump(tmp_path / "valid", num_utts=6, frames=(30, 60), seed=1)
    return tmp_path


def slow_config(data: Path, build_delay_s: float = 0.0, **optim) -> Path:
    """A toy training of 0.05 s per update, checkpoints every 2 updates; ``build_delay_s``: a model
    building that takes that long (a long start-up)."""
    raw = toy_config(data, model={"step_delay_s": 0.05, "build_delay_s": build_delay_s},
                     optim={"max_updates": 30, "warmup_updates": 2, **optim},
                     trainer={"log_interval": 1, "save_interval": 2, "valid_interval": 1000})
    return write_config(data / "c.yaml", raw)


def train_pids(marker: str) -> list[int]:
    """Live ``python -m audiossl.bin.train`` processes with ``marker`` among their arguments (not
    the run.pl or shell that started them)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = re.search(r"State:\s+(\S)", (d / "status").read_text()).group(1)
        except (OSError, AttributeError):
            continue
        is_train = argv[:3] == [sys.executable, "-m", "audiossl.bin.train"]
        if is_train and any(marker in a for a in argv) and state != "Z":
            pids.append(int(d.name))
    return pids


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (its SigCgt mask)."""
    try:
        mask = int(re.search(r"SigCgt:\s*([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text()).group(1), 16)
    except (OSError, AttributeError):
        return False
    return bool(mask >> (signum - 1) & 1)


def wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_in_startup(marker: str, count: int = 1) -> list[int]:
    """The pids of ``count`` trainer processes, once each has its start-up handler installed (the
    entry point's first lines; torch is not imported yet, so this is well before training)."""
    found: list[int] = []

    def ready():
        found[:] = [p for p in train_pids(marker) if catches(p, signal.SIGTERM)]
        return len(found) >= count

    wait_for(ready, timeout=60, what=f"{count} trainer(s) to install their handlers")
    return found


# ------------------------------------------------------------------------------ start-up
def test_a_stop_swallowed_inside_an_import_is_raised_again(tmp_path, monkeypatch):
    """An import with an optional-dependency fallback (``except BaseException``) swallows a stop raised
    inside it: the watchdog raises it again once the import is over."""
    (tmp_path / "optional_dep.py").write_text(
        "import os, signal, time\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "    DONE = True\n"
        "except BaseException:\n"
        "    DONE = False\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    handlers = signals.stop_at_startup()
    try:
        t0 = time.monotonic()
        with pytest.raises(signals.StartupStopped):
            import optional_dep  # noqa: F401
            for _ in range(100):  # a start-up going on, in short steps
                time.sleep(0.1)
        assert time.monotonic() - t0 < signals.WATCHDOG_S + 3, "the stop came late"
        assert sys.modules["optional_dep"].DONE is False, "the stop came at once, inside the import"
        assert signals.stop_of(ImportError("numpy: PyCapsule_Import could not import module")).signum == signal.SIGTERM
    finally:
        signals.restore(handlers)
        sys.modules.pop("optional_dep", None)
    assert signal.getsignal(signal.SIGALRM) is not signals._on_watchdog
    assert signals.stop_at_startup() is not None and signals.stop_of(ImportError("x")) is None  # a fresh start
    signals.restore({s: signal.SIG_DFL for s in signals.STOP_SIGNALS})


def test_stop_during_startup_exits_75_and_the_rerun_trains(data):
    conf = slow_config(data)
    exp = data / "exp"
    cmd = [*TRAIN, "--config", str(conf), "--output-dir", str(exp)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
    [pid] = wait_in_startup(str(exp))
    assert pid == proc.pid
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_REQUEUE, err
    assert "stopped by SIGTERM outside the training loop: nothing to save" in err
    assert "Traceback" not in err and "training from update" not in err
    assert not (exp / "checkpoint_last.pt").exists()

    # a stop while the model is built: at once, not after the building
    proc = subprocess.Popen([*cmd, "--model.build_delay_s", "60"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=_env())
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "updates per epoch" in line:  # the data is built; the model is being built
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            break
    seen.extend(proc.stderr)
    proc.wait(timeout=120)
    assert proc.returncode == EXIT_REQUEUE and time.monotonic() - t0 < 30, "".join(seen)
    assert "nothing to save" in "".join(seen)

    # a stop while resuming (a checkpoint there, being loaded) loses nothing either
    out = subprocess.run([*cmd, "--optim.max_updates", "4"], capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
    wait_in_startup(str(exp))
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_REQUEUE, err
    assert load_checkpoint(exp / "checkpoint_last.pt")["num_updates"] == 4


def test_stop_during_startup_through_run_pl(data, repo_root):
    conf = slow_config(data)
    exp = data / "exp"
    proc = subprocess.Popen([str(repo_root / "utils" / "run.pl"), str(data / "log" / "train.log"),
                             *TRAIN, "--config", str(conf), "--output-dir", str(exp)],
                            cwd=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    wait_in_startup(str(exp))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    log = (data / "log" / "train.log").read_text()
    assert re.search(r"# Ended \(code 75\)", log), log
    assert "nothing to save" in log and "Traceback" not in log


def test_stop_during_startup_through_queue_pl_is_requeued(slurm_cluster, data, repo_root):
    # 8 s of model building: time for Slurm to deliver the signal (scancel -> slurmd -> the job)
    conf = slow_config(data, build_delay_s=8.0, max_updates=6)
    exp = data / "exp"
    (data / "path.sh").write_text(f"export PYTHONPATH={repo_root}\n")  # the job runs this checkout's code
    proc = subprocess.Popen([str(repo_root / "utils" / "queue.pl"), "--requeue", "true", "log/train.log",
                             *TRAIN, "--config", str(conf), "--output-dir", str(exp)],
                            cwd=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        wait_for(lambda: "updates per epoch" in (data / "log" / "train.log").read_text()
                 if (data / "log" / "train.log").exists() else False, what="the data to be built")
        job_id = re.search(r"as Slurm job (\d+)", (data / "log" / "train.log").read_text()).group(1)
        subprocess.run(["scancel", "--batch", "--signal=TERM", job_id], check=True, timeout=30)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    log = (data / "log" / "train.log").read_text()
    assert re.findall(r"# Ended \(code (\d+)\)", log) == ["75", "0"], log
    assert "nothing to save" in log and "update 1/6" not in log.split("resubmitted")[0]
    assert (exp / "model.pt").is_file()


# ------------------------------------------------------------------------------ --nproc 2
def test_nproc_stopped_while_workers_start_and_mid_training_exit_75_without_traceback(data):
    conf = slow_config(data)
    exp = data / "exp"
    cmd = [*TRAIN, "--config", str(conf), "--output-dir", str(exp), "--nproc", "2"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
    wait_in_startup("--device", count=2)  # the launcher's workers carry --device cpu
    proc.send_signal(signal.SIGTERM)  # to the launcher alone: it passes the stop on
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_REQUEUE, err
    assert "Traceback" not in err and "nothing to save" in err

    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "update 5/30" in line:
            proc.send_signal(signal.SIGTERM)
            break
    seen.extend(proc.stderr)
    proc.wait(timeout=120)
    err = "".join(seen)
    assert proc.returncode == EXIT_REQUEUE, err
    assert "Traceback" not in err and "checkpoint saved" in err
    assert 5 <= load_checkpoint(exp / "checkpoint_last.pt")["num_updates"] < 30
    assert not train_pids(str(exp))


@pytest.mark.parametrize("target", ["launcher", "process group"])
def test_workers_die_with_their_launcher(data, target):
    conf = slow_config(data, max_updates=2000)
    exp = data / "exp"
    cmd = [*TRAIN, "--config", str(conf), "--output-dir", str(exp), "--nproc", "2"]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    try:
        wait_for(lambda: (exp / "checkpoint_last.pt").is_file(), what="the first checkpoint")
        workers = [p for p in train_pids(str(exp)) if p != proc.pid]
        assert len(workers) == 2
        if target == "launcher":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(lambda: not train_pids(str(exp)), timeout=60, what="the workers to stop")
    finally:
        for p in train_pids(str(exp)):
            os.kill(p, signal.SIGKILL)
    if target == "launcher":  # the workers got SIGTERM: they saved and stopped cleanly
        log = (exp / "train.log").read_text()
        assert "got SIGTERM" in log and "checkpoint saved" in log
    # the exp dir is free again: a re-run resumes
    out = subprocess.run([*cmd, "--optim.max_updates", str(load_checkpoint(exp / "checkpoint_last.pt")["num_updates"] + 2)],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in out.stderr


@pytest.mark.parametrize("nproc", [1, 2])
def test_a_second_training_refuses_an_exp_dir_a_live_one_holds(data, nproc):
    conf = slow_config(data, max_updates=2000)
    exp = data / "exp"
    cmd = [*TRAIN, "--config", str(conf), "--output-dir", str(exp), "--nproc", str(nproc)]
    first = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=_env(),
                             start_new_session=True)
    try:
        wait_for(lambda: (exp / "checkpoint_last.pt").is_file(), what="the first training to save")
        second = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
        assert second.returncode == 1, second.stderr
        assert f"{exp}: another training is running in this experiment dir (pid {first.pid} on host" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    wait_for(lambda: not train_pids(str(exp)), timeout=60, what="the first training to be gone")
    # its lock is stale now: the next training takes it over and resumes
    out = subprocess.run([*cmd, "--optim.max_updates", str(load_checkpoint(exp / "checkpoint_last.pt")["num_updates"] + 1)],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "taking over a stale lock" in out.stderr and f"pid {first.pid}" in out.stderr


def test_the_lock_in_process(data):
    cfg = config_from_dict(toy_config(data, optim={"max_updates": 2}))
    held = ExpDirLock(data / "exp").acquire()
    try:
        with pytest.raises(ExpDirBusy, match=f"pid {os.getpid()}"):
            train(cfg, data / "exp", device="cpu")
    finally:
        held.release()
    assert train(cfg, data / "exp", device="cpu").num_updates == 2
    assert (data / "exp" / ".lock").read_text() == "", "a finished training leaves the lock empty"


# ------------------------------------------------------------------------------ saves
def test_temporary_files_of_a_killed_save_are_removed_on_resume(data, caplog):
    cfg = config_from_dict(toy_config(data, optim={"max_updates": 4}, trainer={"save_interval": 2}))
    exp = data / "exp"

    def stop_at_2(self, num_updates):
        if num_updates == 2:
            signal.raise_signal(signal.SIGTERM)

    orig = ToyClassifier.after_optimizer_step
    ToyClassifier.after_optimizer_step = stop_at_2
    try:
        with pytest.raises(TrainingInterrupted):
            train(cfg, exp, device="cpu")
    finally:
        ToyClassifier.after_optimizer_step = orig
    # what a SIGKILL in the middle of torch.save leaves: the temporary files of atomic writes
    left = [exp / "checkpoints" / ".checkpoint_4.pt.k2j3h4.tmp", exp / ".checkpoint_last.pt.x8d7f6.tmp",
            exp / ".model.pt.a1b2c3.tmp"]
    for p in left:
        p.write_bytes(b"\0" * 4096)
    keep = exp / "checkpoints" / "notes.tmp"  # not ours: left alone
    keep.write_text("mine")
    with caplog.at_level("INFO"):
        assert train(cfg, exp, device="cpu").num_updates == 4
    assert not any(p.exists() for p in left) and keep.exists()
    assert "removed 3 temporary file(s) left by an interrupted save" in caplog.text


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its file system is full; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_disk_full_while_saving_says_what_is_intact(data, small_tmpfs):
    # the checkpoints of exp/ live on the small file system; train.log and the rest do not
    exp = data / "exp"
    exp.mkdir()
    (exp / "checkpoints").symlink_to(small_tmpfs)
    conf = slow_config(data, max_updates=8)
    cmd = [*TRAIN, "--config", str(conf), "--output-dir", str(exp)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "(update 2)" in line:  # the first checkpoint is written: now the disk fills up
            filler = fill(small_tmpfs)
            break
    seen.extend(proc.stderr)
    proc.wait(timeout=120)
    err = "".join(seen)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if "ERROR" in x]
    assert "cannot write" in line and "checkpoint_4.pt: No space left on device" in line
    assert f"the previous checkpoint {exp / 'checkpoint_last.pt'} (update 2) is intact" in line
    assert "re-run the same command to resume" in line
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["checkpoint_2.pt", "filler"], "no temporary file left"
    assert load_checkpoint(exp / "checkpoint_last.pt")["num_updates"] == 2

    filler.unlink()
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resumed from {exp / 'checkpoint_last.pt'}: update 2" in out.stderr


def test_disk_full_in_process_raises_write_error(data, small_tmpfs, monkeypatch):
    # no log line or validation before the failing save at update 4: they would hit the full disk first
    cfg = config_from_dict(toy_config(data, optim={"max_updates": 6},
                                      trainer={"save_interval": 2, "log_interval": 100, "valid_interval": 100}))
    exp = small_tmpfs / "exp"

    def fill_at_3(self, num_updates):
        if num_updates == 3:
            fill(small_tmpfs)

    monkeypatch.setattr(ToyClassifier, "after_optimizer_step", fill_at_3)
    with pytest.raises(WriteError, match=r"\(update 2\) is intact") as e:
        train(cfg, exp, device="cpu")
    assert e.value.errno == 28


# ------------------------------------------------------------------------------ log intervals
def test_first_log_line_after_a_mid_interval_resume_is_the_uninterrupted_one(data, monkeypatch):
    raw = toy_config(data, model={"dropout": 0.2}, data={"batch_size": 8, "max_batch_per_device": 4},
                     optim={"max_updates": 12},
                     trainer={"log_interval": 4, "save_interval": 100, "valid_interval": 100})
    cfg = config_from_dict(raw)
    train(cfg, data / "straight", device="cpu")

    def stop_at_6(self, num_updates):
        if num_updates == 6:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(ToyClassifier, "after_optimizer_step", stop_at_6)
    with pytest.raises(TrainingInterrupted):
        train(cfg, data / "resumed", device="cpu")
    monkeypatch.undo()
    train(cfg, data / "resumed", device="cpu")
    assert max_abs_diff(state_of(data / "resumed" / "model.pt"), state_of(data / "straight" / "model.pt")) < 1e-6

    def rows(exp):
        out = []
        for line in (exp / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["split"] == "train":
                out.append({k: v for k, v in r.items() if k not in ("time", "updates_per_s", "clips_per_s")})
        return out

    straight, resumed = rows(data / "straight"), rows(data / "resumed")
    assert [r["update"] for r in resumed] == [r["update"] for r in straight] == [4, 8, 12]
    for a, b in zip(straight, resumed):  # update 8's line averages updates 5..8, two of them before the stop
        assert sorted(a) == sorted(b) and all(a[k] == pytest.approx(b[k], abs=1e-6) for k in a), (a, b)


def test_log_interval_sums_fold_over_ranks():
    from audiossl.train.trainer import LogInterval

    saved = {"ranks": [{"sums": {"loss": 3.0, "acc": 1.0}, "counts": {"loss": 2, "acc": 2}},
                       {"sums": {"loss": 5.0}, "counts": {"loss": 2}}],
             "updates": 2, "gnorm": 0.5}
    zero = LogInterval.restore(saved, 0, torch.device("cpu"))
    one = LogInterval.restore(saved, 1, torch.device("cpu"))
    assert {k: float(v) for k, v in zero.sums.items()} == {"loss": 8.0, "acc": 1.0}
    assert zero.counts == {"loss": 4, "acc": 2} and one.sums == {} and one.counts == {}
    assert zero.updates == one.updates == 2 and float(one.gnorm) == 0.5
