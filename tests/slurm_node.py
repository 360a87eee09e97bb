"""A real single-node Slurm for the tests: munge, slurmctld and slurmd on 127.0.0.1 with a
generated slurm.conf whose every path is under a temp folder. Needs root and Debian's
slurm-wlm and munge (.ci/run installs them); `why_not()` says what is missing."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol", "sinfo")


def why_not() -> str | None:
    """Why a Slurm cannot be started here; None if it can."""
    if os.geteuid() != 0:
        return "Slurm's daemons need root"
    missing = [name for name in DAEMONS if shutil.which(name) is None
               and not Path("/usr/sbin", name).exists()]
    if missing:
        return f"no {', '.join(missing)} here (.ci/run installs Debian's slurm-wlm and munge)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _munge_works() -> bool:
    encoded = subprocess.run(["munge", "-n"], capture_output=True)
    if encoded.returncode != 0:
        return False
    decoded = subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True)
    return decoded.returncode == 0


class SlurmNode:
    """One node, the machine's cores, a partition `debug`; `env` is what client commands need."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self._munged: subprocess.Popen | None = None

    def start(self) -> SlurmNode:
        self._start_munge()
        host = socket.gethostname().split(".")[0]
        for name in ("state", "spool"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        folder = self.folder
        self.conf.write_text("\n".join([
            "ClusterName=incrun-test", f"SlurmctldHost={host}(127.0.0.1)",
            "AuthType=auth/munge", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "SlurmUser=root", "SlurmdUser=root", "ReturnToService=2", "MpiDefault=none",
            "KillWait=2", "MinJobAge=600", "InactiveLimit=0",
            f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
            f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
            f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=2000 "
            "State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
        env = {**os.environ, **self.env}
        subprocess.run([_program("slurmctld"), "-f", str(self.conf)], env=env, check=True)
        subprocess.run([_program("slurmd"), "-f", str(self.conf)], env=env, check=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                                   text=True).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Slurm did not come up: sinfo says {state!r}; see {folder}")

    def _start_munge(self) -> None:
        if _munge_works():
            return  # a munged of the machine's own: leave it be
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        self._munged = subprocess.Popen([_program("munged"), "--foreground"], user="munge",
                                        group="munge", start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not _munge_works():
            if time.monotonic() > deadline:
                raise RuntimeError("munged did not start")
            time.sleep(0.1)

    def state_of(self, job_id: str) -> str:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                             text=True, env={**os.environ, **self.env}).stdout
        return next((part.split("=", 1)[1] for part in out.split()
                     if part.startswith("JobState=")), "")

    def jobs(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True,
                             env={**os.environ, **self.env}).stdout
        return [line for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        env = {**os.environ, **self.env}
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for daemon in ("slurmd", "slurmctld"):
            pidfile = self.folder / f"{daemon}.pid"
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text())
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
        if self._munged is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._munged.pid, signal.SIGTERM)
            self._munged.wait(10)
