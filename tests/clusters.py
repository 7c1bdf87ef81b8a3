"""Throwaway servers for the deployment tests, started and removed by the tests themselves:
a single-node Slurm (munged + slurmctld + slurmd on this host) and a PostgreSQL cluster on its own
port (never the shared one at 5432, which other tests and experiments use).

Each raises :class:`Unavailable` with the reason when it cannot run here (not root, packages
missing, a daemon that does not start); the fixtures turn that into a skip, or into a failure
where ``HPO_REQUIRE_DEPLOY=1`` (CI) says these tests must run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hpo_vidpred.store.local_proxy import LocalProxy, free_port

REQUIRED = os.environ.get("HPO_REQUIRE_DEPLOY") == "1"
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # daemons


class Unavailable(Exception):
    """This machine cannot run the server (the message says why)."""


def unavailable(reason: str) -> None:
    """Skip the test, or fail it where the deployment tests are required (CI)."""
    if REQUIRED:
        pytest.fail(f"HPO_REQUIRE_DEPLOY=1 but {reason}")
    pytest.skip(reason)


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise Unavailable(f"{what} needs root (the test starts its daemons itself)")


# --------------------------------------------------------------------------- PostgreSQL
class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder on a free port, run as user postgres
    (``initdb`` + ``pg_ctl`` from Debian's /usr/lib/postgresql/<version>/bin)."""

    def __init__(self) -> None:
        _need_root("a throwaway PostgreSQL cluster")
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        self.runuser = shutil.which("runuser", path=_SBIN_PATH)
        if not bins or self.runuser is None:
            raise Unavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin) or "
                              "runuser here")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("no 'postgres' user to run a throwaway cluster as") from None
        self.bin = bins[-1].parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        done = self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            self.remove()
            raise Unavailable(f"initdb failed: {done.stderr.strip()[-300:]}")
        self.start()

    def _as_postgres(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.runuser, "-u", "postgres", "--", str(self.bin / tool), *args],
                              capture_output=True, text=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        done = self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start", "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")
        if done.returncode != 0:
            log = (self.root / "log").read_text()[-500:] if (self.root / "log").exists() else ""
            raise Unavailable(f"pg_ctl start failed: {done.stderr.strip()[-300:]} {log}")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- Slurm
_SLURM_CONF = """\
ClusterName=hpotest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=600
MpiDefault=none
SwitchType=switch/none
PlugStackConfig=/dev/null
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} Gres=gpu:{gpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


class SingleNodeSlurm:
    """munged, slurmctld and slurmd on this host, all state in a temporary folder. The node
    declares ``gpus`` GPUs backed by empty files (gres.conf ``File=``), so a job script's
    ``--gres=gpu:1`` is scheduled as written (CUDA sees no device: the tasks train on the CPU)."""

    def __init__(self, cpus: int = 4, gpus: int = 4) -> None:
        _need_root("a single-node Slurm")
        path = _SBIN_PATH
        missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel",
                               "scontrol") if shutil.which(b, path=path) is None]
        if missing:
            raise Unavailable(f"Slurm is not installed ({', '.join(missing)} missing; Debian: "
                              "apt-get install slurm-wlm munge)")
        self.root = Path(tempfile.mkdtemp(prefix="hpo-slurm-"))
        self.root.chmod(0o755)
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        self.conf = self.root / "slurm.conf"
        self.conf.write_text(_SLURM_CONF.format(root=self.root, ctld_port=free_port(),
                                                d_port=free_port(), cpus=cpus, gpus=gpus))
        for i in range(gpus):
            (self.root / f"gpu{i}").touch()
        (self.root / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName=localhost Name=gpu File={self.root}/gpu[0-{gpus - 1}]\n")
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}
        try:
            self._start()
        except BaseException:
            self.remove()
            raise

    def _start(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        munged = subprocess.run(
            ["munged", "--force", f"--socket={self.root}/munge.sock", f"--key-file={key}",
             f"--pid-file={self.root}/munged.pid", f"--log-file={self.root}/munged.log",
             f"--seed-file={self.root}/munged.seed"], capture_output=True, text=True,
            env=self.env)
        if munged.returncode != 0:
            raise Unavailable(f"munged did not start: {munged.stderr.strip()[-300:]}")
        for daemon in (["slurmctld", "-i", "-c"], ["slurmd", "-N", "localhost"]):
            done = subprocess.run(daemon, env=self.env, capture_output=True, text=True)
            if done.returncode != 0:
                raise Unavailable(f"{daemon[0]} did not start: {done.stderr.strip()[-300:]}")
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run("sinfo", "-h", "-o", "%T").stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise Unavailable(f"the Slurm node did not come up (state {state!r}): "
                          f"{self.log('slurmd')[-300:]}")

    def run(self, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True,
                              timeout=60, **kwargs)

    def log(self, daemon: str) -> str:
        path = self.root / f"{daemon}.log"
        return path.read_text() if path.exists() else ""

    def jobs(self, job_id: str) -> list[str]:
        """States of the job's tasks still known to the queue (pending or running)."""
        out = self.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout
        return out.split()

    def remove(self) -> None:
        """Cancel what runs, stop the daemons, end every process of this cluster (its step
        daemons and job processes carry its SLURM_CONF), delete the folder."""
        self.run("scancel", "--user=root")
        deadline = time.time() + 20
        while self.run("squeue", "-h").stdout.strip() and time.time() < deadline:
            time.sleep(0.5)
        self.run("scontrol", "shutdown")
        for name in ("slurmd", "slurmctld", "munged"):
            _end(self.root / f"{name}.pid")
        mine = f"SLURM_CONF={self.conf}".encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    if mine in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                        os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    continue
        shutil.rmtree(self.root, ignore_errors=True)


def _end(pid_file: Path, wait_s: float = 10.0) -> None:
    """SIGTERM the daemon of ``pid_file`` and wait until it has exited (munged writes its seed
    file on the way out)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":  # exited; its parent (init) has not reaped it yet
            return
        time.sleep(0.1)


# --------------------------------------------------------------------------- hpo store serve
class StoreProxy(LocalProxy):
    """``hpo store serve`` for the tests: the package's starter (hpo_vidpred.store.local_proxy)."""
