"""A throwaway PostgreSQL for the shared-preferences tests: ``initdb`` into a temporary
folder and ``postgres`` on a free loopback port, once per test session, stopped after it.

The binaries are Debian's (``/usr/lib/postgresql/<version>/bin``, from the ``postgresql``
package that ``make postgres`` installs) or the first ``initdb`` on PATH. PostgreSQL refuses
to run as root, so as root (CI) the cluster runs as the ``postgres`` system user the Debian
package creates. Where no server can be started the tests that need one are skipped
locally and fail under ``CI=true``. ``pg_url`` is a fresh, empty database per test."""

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
import uuid

import pytest

from conftest import in_ci, require


def unavailable(why: str):
    why = f"no PostgreSQL server could be started: {why}"
    if in_ci():
        pytest.fail(f"CI=true and a test dependency is missing: {why}", pytrace=False)
    pytest.skip(why)


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One ``postgres`` process over a fresh data folder; ``url(db)`` reaches it."""

    def __init__(self):
        initdb, postgres = pg_bin("initdb"), pg_bin("postgres")
        if not initdb or not postgres:
            unavailable("initdb and postgres are not installed (`make postgres`: apt-get install postgresql)")
        psycopg = require("psycopg", "pip install 'psycopg[binary]' psycopg_pool (the server's dependencies)")
        self.as_user = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no 'postgres' user to run the server as "
                            "(Debian's postgresql package creates it)")
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.root = tempfile.mkdtemp(prefix="cadenza-pg-")
        if self.as_user:
            os.chown(self.root, self.as_user["user"], self.as_user["group"])
        data = os.path.join(self.root, "data")
        self.port = free_port()
        init = subprocess.run([initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
                               "--no-sync"], capture_output=True, text=True, cwd=self.root, **self.as_user)
        if init.returncode != 0:
            self.cleanup()
            unavailable(f"initdb failed: {init.stderr.strip()[-400:]}")
        self.log = open(os.path.join(self.root, "postgres.log"), "w+")
        self.proc = subprocess.Popen(
            [postgres, "-D", data, "-p", str(self.port), "-k", self.root, "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root, **self.as_user)
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.log.seek(0)
                    log = self.log.read()[-600:]
                    self.stop()
                    unavailable(f"postgres did not start: {log}")
                time.sleep(0.1)

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return name

    def drop_db(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)      # fast shutdown: ends every session
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster():
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres_cluster):
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    name = postgres_cluster.create_db()
    yield postgres_cluster.url(name)
    postgres_cluster.drop_db(name)
