"""The Dask cluster a run asked for, reached or started: an existing scheduler (with Dask's own
TLS), a LocalCluster on 127.0.0.1, or a dask-jobqueue SLURMCluster from [tool.incrun.slurm],
whose SLURM jobs are asked for as the stale jobs need and given back when the run ends."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import distributed

from .. import errors
from ..config import Cluster

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler
WORKER_TIMEOUT = 60.0  # seconds an existing scheduler has to show a first worker
WAIT_STEP = 1.0  # seconds between looks for a worker, so that a stop is heard
SETTLE = 10.0  # seconds a SLURM job that is ending has to say how it ended


def silence_dask() -> None:
    """Dask's own log lines would garble the display; incrun says what went wrong itself."""
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


class Connection:
    """A client of the cluster, and the cluster itself when this run started it."""

    def __init__(self, cluster: Cluster, root: Path, tls: dict, slurm: dict):
        self.cluster = cluster
        self.root = root
        self._tls, self._slurm = tls, slurm
        self.client = None
        self._owned = None  # the LocalCluster or SLURMCluster this run started
        self._slurm_jobs = 0
        self._reasons: dict[str, str | None] = {}  # why a lost worker went, by its name

    def open(self, jobs: int):
        """The client, the cluster started first if it is this run's; `jobs` are stale."""
        silence_dask()
        kind = self.cluster.kind
        if kind == "local":
            self._owned = distributed.LocalCluster(
                n_workers=self.cluster.workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None, silence_logs=logging.CRITICAL)
        elif kind == "slurm":
            self._owned = slurm_cluster(self._slurm, self.root)
            _check_job_script(self._owned.job_script(), self.root)
            self.grow(jobs)
        if self._owned is not None:
            self.client = distributed.Client(self._owned, set_as_default=False)
            return self.client
        try:
            self.client = distributed.Client(self.cluster.address, timeout=CONNECT_TIMEOUT,
                                             security=self._security(), set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise errors.ClusterError(
                f"cannot reach the Dask scheduler at {self.cluster.address}: "
                f"{errors.first_line(error)}",
                hint="is `dask scheduler` running there, and the port open to this host?") \
                from None
        return self.client

    def grow(self, jobs: int) -> None:
        """Enough SLURM jobs for `jobs` jobs (at most `max_workers`); 0: not known yet, as
        many as allowed."""
        if self.cluster.kind != "slurm" or self._owned is None:
            return
        cores, most = int(self._slurm.get("cores", 1)), self._slurm.get("max_workers")
        wanted = max(1, -(-jobs // cores)) if jobs else (most or 1)
        wanted = min(wanted, most or wanted)
        if wanted > self._slurm_jobs:
            self._slurm_jobs = wanted
            self._owned.scale(jobs=wanted)

    def kill(self) -> None:
        """The SLURM jobs this run asked for, cancelled now (incrun is about to exit)."""
        if self.cluster.kind != "slurm" or self._owned is None:
            return
        ids = [str(job.job_id) for job in list(self._owned.workers.values())
               if getattr(job, "job_id", None)]
        if ids:
            try:
                subprocess.run(["scancel", *ids], capture_output=True, timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def _security(self):
        """Dask's TLS, from the files [tool.incrun.dask] names, for a tls:// scheduler."""
        if not self.cluster.address.startswith("tls://"):
            return None
        missing = [key for key in ("ca", "cert", "key") if not self._tls.get(key)]
        if missing:
            raise errors.BadConfig(f"a tls:// scheduler needs {', '.join(missing)} in "
                                   "[tool.incrun.dask]",
                                   hint='ca = "ca.pem", cert = "me.pem", key = "me.key"')
        files = {key: self.root / self._tls[key] for key in ("ca", "cert", "key")}
        for key, path in files.items():
            if not path.is_file():
                raise errors.BadConfig(f"[tool.incrun.dask] {key}: no such file "
                                       f"{self._tls[key]}")
        return distributed.security.Security(
            tls_ca_file=str(files["ca"]), tls_client_cert=str(files["cert"]),
            tls_client_key=str(files["key"]), require_encryption=True)

    def wait_for_a_worker(self, stopped) -> bool:
        """Wait until a worker is there (SLURM jobs may queue for long: as long as they do);
        False if the run was stopped meanwhile."""
        patience = None if self.cluster.kind == "slurm" else WORKER_TIMEOUT
        waited = 0.0
        while not stopped():
            try:
                self.client.wait_for_workers(1, timeout=WAIT_STEP)
                return True
            except TimeoutError:
                waited += WAIT_STEP
            if patience is not None and waited >= patience:
                raise errors.ClusterError(
                    f"no Dask worker joined the scheduler at {self.cluster} within "
                    f"{patience:g}s", hint="start workers: dask worker ADDRESS")
        return False

    def threads(self, workers: dict) -> int:
        """Jobs the cluster runs at once: its workers' threads; SLURM's, once all have come."""
        threads = sum(worker["nthreads"] for worker in workers.values())
        if self.cluster.kind == "slurm":
            threads = max(threads, int(self._slurm.get("cores", 1)) * self._slurm_jobs)
        return max(threads, 1)

    @property
    def replaces_workers(self) -> bool:
        return self.cluster.kind == "slurm"

    def replace_lost_workers(self) -> None:
        """SLURM jobs that ended (cancelled, past their walltime) are asked for again."""
        if self._owned is not None and self._slurm_jobs:
            self._owned.scale(jobs=self._slurm_jobs)

    def why_lost(self, worker: str) -> str | None:
        """Why a worker went, when the cluster can say: its SLURM job's state (asked once per
        worker: its other jobs hear the same)."""
        if self.cluster.kind != "slurm" or self._owned is None:
            return None
        if worker not in self._reasons:
            self._reasons[worker] = self._slurm_reason(worker)
        return self._reasons[worker]

    def _slurm_reason(self, worker: str) -> str | None:
        job = next((job for name, job in list(self._owned.workers.items())
                    if worker == str(name) or worker.startswith(f"{name}-")), None)
        job_id = getattr(job, "job_id", None)
        if not job_id:
            return None
        state = slurm_state(job_id)
        deadline = time.monotonic() + SETTLE
        while state in ("RUNNING", "COMPLETING") and time.monotonic() < deadline:
            time.sleep(0.2)  # the job is being ended: its final state comes in a moment
            state = slurm_state(job_id)
        walltime = self._slurm.get("walltime")
        if state == "TIMEOUT" and walltime:
            return f"its SLURM job {job_id} passed its walltime of {walltime}"
        if state:
            return f"its SLURM job {job_id} ended: {state}"
        return None

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close(timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, RuntimeError):
                pass
        owned, self._owned = self._owned, None
        if owned is not None:
            owned.close()


def slurm_cluster(settings: dict, root: Path):
    """A dask-jobqueue SLURMCluster from [tool.incrun.slurm]; no job is asked for yet. Its
    scheduler runs in this process: a worker lost (its SLURM job cancelled, or past its
    walltime) fails its job at once, with the reason, rather than have Dask run it again."""
    ours = signal.getsignal(signal.SIGINT)
    try:
        import dask
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise errors.MissingExtra("dask-jobqueue", "slurm", "--cluster slurm") from None
    finally:  # dask_jobqueue sets its own Ctrl-C handler as it is imported: the run's stays
        signal.signal(signal.SIGINT, ours)
    dask.config.set({"distributed.scheduler.allowed-failures": 0,
                     "distributed.deploy.lost-worker-timeout": "1s"})
    options = {"cores": int(settings.get("cores", 1)), "memory": settings.get("memory", "1GB"),
               "processes": int(settings.get("processes", 1)),
               "job_extra_directives": list(settings.get("extra", [])),
               "scheduler_options": {"dashboard_address": None},
               "log_directory": str(root / ".incrun" / "slurm"), "silence_logs": "critical"}
    for key, name in (("partition", "queue"), ("account", "account"), ("walltime", "walltime"),
                      ("python", "python"), ("local_directory", "local_directory"),
                      ("interface", "interface")):
        if key in settings:
            options[name] = settings[key]
    return SLURMCluster(**options)


def _check_job_script(script: str, root: Path) -> None:
    """`sbatch --test-only` on the workers' job script: SLURM's own word on a partition or
    account that is wrong, now, rather than jobs that never start."""
    if shutil.which("sbatch") is None:
        raise errors.ClusterError("--cluster slurm submits SLURM jobs, and there is no sbatch "
                                  "here", hint="run incrun on a SLURM login node")
    folder = root / ".incrun" / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "worker-job.sh"
    path.write_text(script)
    try:
        checked = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True,
                                 text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise errors.ClusterError(f"sbatch --test-only failed: {error}") from None
    if checked.returncode != 0:
        lines = [line for line in checked.stderr.splitlines() if line.strip()]
        raise errors.ClusterError(f"SLURM refuses the workers' job ({path.relative_to(root)}): "
                                  f"{lines[-1] if lines else 'no reason given'}",
                                  hint="check partition, account, memory and walltime in "
                                       "[tool.incrun.slurm]")


def slurm_state(job_id: str) -> str:
    """A SLURM job's state (RUNNING, CANCELLED, TIMEOUT...), from scontrol; empty if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)],
                             capture_output=True, text=True, timeout=10,
                             env=os.environ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return next((part.split("=", 1)[1] for part in out.split() if part.startswith("JobState=")),
                "")
