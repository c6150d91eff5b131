"""A real PostgreSQL server for the distributed-search tests: a fresh cluster in a temporary
directory, on 127.0.0.1 and a free port, started once per session and stopped at the end.

The server comes from Debian's `postgresql` package (tests/system/setup.sh installs it; `make
test` runs that first). PostgreSQL refuses to run as root: as root the cluster belongs to the
`postgres` system user (created by the package). Missing PostgreSQL fails the test on CI
(CI=true) and skips it elsewhere, with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL is needed on CI: {reason} (tests/system/setup.sh installs it)")
    pytest.skip(f"{reason}: run `sh tests/system/setup.sh` (as root) to install PostgreSQL")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://advisor@127.0.0.1:PORT/advisor of a server started for this session."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        _unavailable("initdb/pg_ctl not found")
    assert initdb and pg_ctl
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="advisor-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no `postgres` user")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()

    def run(*cmd: str) -> None:
        r = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(cmd)} failed: {r.stdout}{r.stderr}"

    run(initdb, "-D", str(data), "-U", "advisor", "-A", "trust", "--no-sync", "-E", "UTF8")
    opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=50")
    run(pg_ctl, "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
    try:
        import psycopg2

        for _ in range(50):
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="advisor",
                                        dbname="postgres")
                break
            except psycopg2.OperationalError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"PostgreSQL did not accept connections: {log.read_text()}")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE advisor")
        conn.close()
        yield f"postgresql://advisor@127.0.0.1:{port}/advisor"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
