"""A throw-away PostgreSQL server on loopback: initdb into a temp dir, pg_ctl start on a free port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER = "machop"
PASSWORD = "machop-test-pw"


def _bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and createdb (Debian keeps them out of PATH)."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)]
    return next((c for c in candidates if all((c / tool).exists() for tool in ("initdb", "createdb"))), None)


def _try_install() -> str:
    """Install the server from Debian packages where that is possible (CI runs as root)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root or no apt-get"
    last = "apt-get failed"
    for command in (["apt-get", "install", "-y", "-qq", "postgresql"],
                    ["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if result.returncode == 0 and _bin_dir() is not None:
            return ""
        lines = (result.stderr or result.stdout).strip().splitlines()
        last = lines[-1] if lines else last
    return last


def find_binaries() -> tuple[Path | None, str]:
    """The PostgreSQL bin folder, installing the server if needed; or None and why not."""
    found = _bin_dir()
    if found is None:
        reason = _try_install()
        found = _bin_dir()
        if found is None:
            return None, f"PostgreSQL server binaries (initdb, pg_ctl) are not installed and could not be: {reason}"
    return found, ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server; `url(database)` gives an SQLAlchemy URL for it."""

    bin_dir: Path
    root: Path
    port: int
    pid: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "machop", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PGPASSWORD": PASSWORD})
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr or result.stdout}")
        return result

    def start(self) -> PostgresServer:
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=scram-sha-256",
                  f"--pwfile={password_file}", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self.create_database("machop")
        return self

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(50):
            if not self.pid or not Path(f"/proc/{self.pid}").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(bin_dir: Path) -> PostgresServer:
    """initdb + pg_ctl start in a fresh temp folder (outside pytest's private tmp, for the postgres user)."""
    root = Path(tempfile.mkdtemp(prefix="machop-pg-"))
    server = PostgresServer(bin_dir, root, _free_port())
    try:
        return server.start()
    except Exception:
        server.stop()
        raise
