"""Real database and cache servers on loopback for the data-tier tests.

PostgreSQL (initdb + pg_ctl), MariaDB (mariadb-install-db + mariadbd, for both the
mysql and mariadb engine settings) and Redis (redis-server), each started once per
test session in a temporary directory on a free port. A missing server binary skips
its tests, except with CI=true, where .ci/run installs them and absence fails.

Run as root, the database servers refuse to start; they then run as the `postgres`
/ `mysql` user (or nobody) over a directory handed to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app_test_support import free_port, require

ADMIN_PASSWORD = "admin-" + secrets.token_hex(6)
APP_USER = "stylesphere"
APP_PASSWORD = "app-" + secrets.token_hex(6)


def _find(name: str, extra_globs=()) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[-1]
    return None


def _service_user(*names: str) -> pwd.struct_passwd | None:
    """Who runs a server when this process is root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in names + ("nobody",):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user to run the server as")


def _workdir(prefix: str, owner: pwd.struct_passwd | None) -> Path:
    # Not under pytest's tmp_path: its parents are 0700 root, which the server's user cannot enter.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def _run(cmd, owner, **kw):
    if owner is not None:
        kw.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def _popen(cmd, owner, log: Path, **kw):
    if owner is not None:
        kw.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    out = open(log, "ab")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)


def _wait(check, what: str, timeout: float = 60.0, proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            return check()
        except Exception as exc:  # the server is still starting: any failure means "not yet"
            last = exc
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up: {last}\n{tail}")


@dataclass
class Server:
    kind: str
    host: str
    port: int
    workdir: Path
    extra: dict = field(default_factory=dict)
    _counter: int = 0

    def new_database(self) -> str:
        """A fresh, empty database owned by the app user; its name."""
        self._counter += 1
        name = f"shop_{self._counter}_{secrets.token_hex(3)}"
        self.extra["create_database"](name)
        return name

    def env(self, engine: str, database: str) -> dict:
        return {"DATABASE_ENGINE": engine, "DATABASE_HOST": self.host, "DATABASE_PORT": str(self.port),
                "DATABASE_NAME": database, "DATABASE_USER": APP_USER, "DATABASE_PASSWORD": APP_PASSWORD}


# --------------------------------------------------------------------------- PostgreSQL

def start_postgres():
    initdb = _find("initdb", ["/usr/lib/postgresql/*/bin/initdb"])
    require(initdb is not None, "PostgreSQL is not installed (apt-get install postgresql)")
    bindir = Path(initdb).resolve().parent
    pg_ctl = bindir / "pg_ctl"
    owner = _service_user("postgres")
    work = _workdir("stylesphere-pg-", owner)
    pwfile = work / "pw"
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    if owner is not None:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    data = work / "data"
    _run([str(initdb), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync",
          "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"], owner)
    port = free_port()
    log = work / "postgres.log"
    options = (f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    _run([str(pg_ctl), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"], owner)

    import psycopg

    def admin(sql: str, dbname: str = "postgres"):
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=ADMIN_PASSWORD,
                             dbname=dbname, autocommit=True) as conn:
            conn.execute(sql)

    _wait(lambda: admin("SELECT 1"), "PostgreSQL", log=log)
    admin(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")

    def create_database(name):
        admin(f"CREATE DATABASE {name} OWNER {APP_USER}")

    def stop():
        subprocess.run([str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60,
                       **({"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}))
        shutil.rmtree(work, ignore_errors=True)

    return Server("postgres", "127.0.0.1", port, work,
                  {"create_database": create_database, "admin": admin, "stop": stop})


# --------------------------------------------------------------------------- MariaDB

def start_mariadb():
    mariadbd = _find("mariadbd", ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"])
    install = _find("mariadb-install-db", ["/usr/bin/mysql_install_db"])
    require(mariadbd is not None and install is not None,
            "MariaDB is not installed (apt-get install mariadb-server)")
    owner = _service_user("mysql")
    work = _workdir("stylesphere-maria-", owner)
    data = work / "data"
    user_args = [f"--user={owner.pw_name}"] if owner else []
    _run([install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
          "--skip-test-db", "--skip-name-resolve", *user_args], None)
    port = free_port()
    sock = work / "mysqld.sock"
    log = work / "mariadb.log"
    proc = _popen([mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                   "--bind-address=127.0.0.1", f"--pid-file={work / 'mysqld.pid'}", f"--log-error={log}",
                   "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
                   "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--max-connections=200",
                   *user_args], None, work / "stdout.log")

    import pymysql

    def admin(sql: str):
        conn = pymysql.connect(unix_socket=str(sock), user="root", password="", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    _wait(lambda: admin("SELECT 1"), "MariaDB", proc=proc, log=log)
    admin(f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'")
    admin(f"CREATE USER '{APP_USER}'@'localhost' IDENTIFIED BY '{APP_PASSWORD}'")

    def create_database(name):
        admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        for host in ("%", "localhost"):
            admin(f"GRANT ALL ON {name}.* TO '{APP_USER}'@'{host}'")

    def stop():
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    return Server("mariadb", "127.0.0.1", port, work,
                  {"create_database": create_database, "admin": admin, "stop": stop, "proc": proc})


# --------------------------------------------------------------------------- Redis

def start_redis(password: str = "redis-" + secrets.token_hex(6)):
    binary = _find("redis-server")
    require(binary is not None, "Redis is not installed (apt-get install redis-server)")
    work = Path(tempfile.mkdtemp(prefix="stylesphere-redis-"))
    port = free_port()
    log = work / "redis.log"
    proc = _popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--requirepass", password, "--dir", str(work), "--logfile", str(log)], None,
                  work / "stdout.log")

    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=password, decode_responses=True)
    _wait(client.ping, "Redis", proc=proc, log=log)

    def stop():
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    return Server("redis", "127.0.0.1", port, work,
                  {"password": password, "client": client, "stop": stop, "proc": proc})


# --------------------------------------------------------------------------- fixtures

def _session_server(start):
    server = start()
    try:
        yield server
    finally:
        server.extra["stop"]()


@pytest.fixture(scope="session")
def postgres_server():
    yield from _session_server(start_postgres)


@pytest.fixture(scope="session")
def mariadb_server():
    yield from _session_server(start_mariadb)


@pytest.fixture(scope="session")
def redis_server():
    yield from _session_server(start_redis)
