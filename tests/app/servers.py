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


# --------------------------------------------------------------------------- TLS

def make_certificates(directory: Path, owner: pwd.struct_passwd | None = None) -> dict:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost; paths of the PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stylesphere test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)  # PostgreSQL refuses a key others can read
    if owner is not None:
        for path in paths.values():
            os.chown(path, owner.pw_uid, owner.pw_gid)
    return paths


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
    # TLS on as well (RDS's rds.force_ssl): DATABASE_TLS=require must connect to a
    # certificate the image cannot verify, as RDS's is.
    tls = make_certificates(work, owner)
    options = (f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
               f"-c ssl=on -c ssl_cert_file={tls['cert']} -c ssl_key_file={tls['key']}")
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
    tls = make_certificates(work, owner)
    proc = _popen([mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                   "--bind-address=127.0.0.1", f"--pid-file={work / 'mysqld.pid'}", f"--log-error={log}",
                   "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
                   "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--max-connections=200",
                   f"--ssl-cert={tls['cert']}", f"--ssl-key={tls['key']}", f"--ssl-ca={tls['ca']}",
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

def start_redis(password: str = "redis-" + secrets.token_hex(6), tls: bool = False):
    """Redis with AUTH; with ``tls``, TLS only on its port, like ElastiCache's in-transit encryption."""
    binary = _find("redis-server")
    require(binary is not None, "Redis is not installed (apt-get install redis-server)")
    work = Path(tempfile.mkdtemp(prefix="stylesphere-redis-"))
    port = free_port()
    log = work / "redis.log"
    listen = ["--port", str(port)]
    certs = None
    if tls:
        certs = make_certificates(work)
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs["cert"]),
                  "--tls-key-file", str(certs["key"]), "--tls-ca-cert-file", str(certs["ca"]),
                  "--tls-auth-clients", "no"]
    proc = _popen([binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--requirepass", password, "--dir", str(work), "--logfile", str(log)], None,
                  work / "stdout.log")

    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=password, decode_responses=True,
                         **({"ssl": True, "ssl_ca_certs": str(certs["ca"])} if tls else {}))
    _wait(client.ping, "Redis", proc=proc, log=log)

    def stop():
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    return Server("redis", "127.0.0.1", port, work,
                  {"password": password, "client": client, "stop": stop, "proc": proc, "certs": certs})


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


@pytest.fixture(scope="session")
def redis_tls_server():
    yield from _session_server(lambda: start_redis(tls=True))
