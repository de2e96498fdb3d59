"""Shared fixtures for the whole test suite: ``repo_root`` and ``slurm_cluster``.

``slurm_cluster`` starts a real one-node Slurm (munge, slurmctld, slurmd) on loopback once per test
session, for tests that submit jobs through utils/queue.pl, sbatch or srun::

    def test_something(slurm_cluster, tmp_path):
        # os.environ["SLURM_CONF"] points at the cluster; sbatch/srun/squeue and queue.pl just work.
        subprocess.run(["sbatch", "--wrap", "true"], check=True)

The cluster: one node (``hostname -s``) with ``CPUs=$(nproc)``, one default partition ``debug``
without a time limit, memory tracked but not enforced (``DefMemPerCPU`` 256 MB, ``RealMemory`` at
most 8 GB), everything under a temporary directory, ports chosen free, jobs run as root. It is left
usable for every later test of the session and stopped at the end. Without the binaries the tests
that use it skip ("slurm-wlm/munge not installed; .ci/run installs them"); without root they skip
too (slurmd must run as root). Settings that work without systemd or cgroups: proctrack/linuxproc,
task/none, jobacct_gather/none, select/cons_tres with CR_Core_Memory, ReturnToService=2.

munge: a munged already answering on the default socket is reused and left alone; otherwise a
private munged (its own key and socket in the temporary directory, ``AuthInfo=socket=...``) is
started, so concurrent test sessions never stop each other's daemon.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SLURM_BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top directory."""
    return Path(__file__).resolve().parent.parent


@dataclass
class SlurmCluster:
    """A running one-node Slurm cluster (the value of the ``slurm_cluster`` fixture)."""

    conf: Path            # its slurm.conf; also os.environ["SLURM_CONF"]
    partition: str        # the default partition
    node: str             # the node name (hostname -s)
    cpus: int             # CPUs of the node
    real_memory_mb: int   # memory the node offers
    root: Path            # temporary directory with the state, spool and logs (log/*.log)


def _free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _munge_works(socket_path: str | None) -> bool:
    args = ["--socket", socket_path] if socket_path else []
    try:
        cred = subprocess.run(["munge", "-n", *args], capture_output=True, timeout=10)
        if cred.returncode != 0:
            return False
        check = subprocess.run(["unmunge", *args], input=cred.stdout, capture_output=True, timeout=10)
        return check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return False


def _stop_pid(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if not _alive(pid):
            return


def _log_tails(log_dir: Path) -> str:
    out = []
    for log in sorted(log_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        out.append(f"--- {log}\n" + "\n".join(lines))
    return "\n".join(out)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start a one-node Slurm on loopback (see the module docstring); stop it after the session."""
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"slurm-wlm/munge not installed (missing {' '.join(missing)}); .ci/run installs them")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs; run the Slurm tests as root (as .ci/run does)")

    root = Path(tempfile.mkdtemp(prefix="audiossl-slurm-"))
    (root / "state").mkdir()
    (root / "spool").mkdir()
    (root / "log").mkdir()
    root.chmod(0o755)
    node = socket.gethostname().split(".")[0]
    cpus = len(os.sched_getaffinity(0))  # what nproc prints
    with open("/proc/meminfo") as f:
        mem_total_mb = int(f.readline().split()[1]) // 1024
    real_memory_mb = max(256, min(8192, mem_total_mb // 2))
    ctld_port, slurmd_port = _free_ports(2)
    started: list[Path] = []  # pid files of the daemons we started, in start order

    auth_info = ""
    if not _munge_works(None):
        munge_dir = root / "munge"
        munge_dir.mkdir(mode=0o755)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = munge_dir / "munge.socket"
        subprocess.run(
            ["munged", "--force", f"--socket={sock}", f"--key-file={key}", f"--pid-file={munge_dir / 'munged.pid'}",
             f"--log-file={root / 'log' / 'munged.log'}", f"--seed-file={munge_dir / 'munged.seed'}"],
            check=True, capture_output=True, timeout=30,
        )
        started.append(munge_dir / "munged.pid")
        auth_info = f"AuthInfo=socket={sock}\n"

    conf = root / "slurm.conf"
    conf.write_text(
        f"""# One-node test cluster written by test/conftest.py
ClusterName=audiossltest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
{auth_info}StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'log' / 'slurmctld.log'}
SlurmdLogFile={root / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
KillWait=2
MinJobAge=30
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)

    def stop() -> None:
        subprocess.run(["scancel", "--quiet", f"--user={os.getuid()}"], capture_output=True, timeout=30)
        for pid_file in (root / "slurmd.pid", root / "slurmctld.pid"):
            if pid_file.exists():
                _stop_pid(pid_file)
        for pid_file in reversed(started):
            _stop_pid(pid_file)
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        shutil.rmtree(root, ignore_errors=True)

    try:
        subprocess.run(["slurmctld"], check=True, capture_output=True, timeout=60)
        subprocess.run(["slurmd", "-N", node], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            res = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True, timeout=30)
            state = res.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"node {node} is '{state}', not idle, 60 s after start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError) as e:
        detail = _log_tails(root / "log")
        stop()
        pytest.fail(f"could not start the test Slurm cluster: {e}\n{detail}")

    yield SlurmCluster(conf=conf, partition="debug", node=node, cpus=cpus, real_memory_mb=real_memory_mb, root=root)
    stop()
