"""``hpo store serve`` started as a child process on a free loopback port: what the proxy's
tests and ``benchmarks/store_scaling.py`` put in front of a store (a user starts it by hand or
as a service, docs/deploy.md)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import HpoError

__all__ = ["LocalProxy", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalProxy:
    """``hpo store serve --storage URL`` on a free loopback port, in its own process; ``url`` is
    the ``grpc://`` URL workers pass as ``--storage``. Raises :class:`HpoError` with the server's
    last line when it does not start within ``start_s`` seconds."""

    def __init__(self, store_url: str, threads: int | None = None, cwd: Path | None = None,
                 start_s: float = 120.0) -> None:
        self.port, self.store_url = free_port(), store_url
        self.url = f"grpc://127.0.0.1:{self.port}"
        fd, log = tempfile.mkstemp(prefix="hpo-store-serve-", suffix=".log")
        os.close(fd)
        self.log = Path(log)
        argv = [sys.executable, "-m", "hpo_vidpred.cli", "store", "serve", "--storage",
                store_url, "--port", str(self.port)]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(argv + (["--threads", str(threads)] if threads else []),
                                         stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        deadline = time.time() + start_s
        while time.time() < deadline:
            if "serving " in self.log.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        lines = [line for line in self.stop().splitlines() if line.strip()]
        raise HpoError("hpo store serve did not start: " + (lines[-1] if lines else "no output"))

    def stop(self) -> str:
        """Stop the server as Ctrl-C does (killed after 30 s); its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self.log.read_text()
        self.log.unlink(missing_ok=True)
        return text
