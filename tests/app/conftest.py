"""Fixtures for the StyleSphere app tests: the Flask app, the built storefront,
and a loopback stack (API + storefront + images host behind an ALB-like router)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path

import pytest

# Make the helper module importable whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app_test_support import APP, FRONTEND, IMAGES, require, storefront, wait_http  # noqa: E402
from servers import mariadb_server, postgres_server, redis_server, redis_tls_server  # noqa: E402,F401


# --------------------------------------------------------------------------- backend

@pytest.fixture()
def api_client():
    from stylesphere_api import create_app

    app = create_app(images_base_url="https://assets.example.test/images/")
    app.testing = True
    return app.test_client()


# --------------------------------------------------------------------------- frontend build

_SOURCES = ("app", "public", "package.json", "package-lock.json", "next.config.mjs", "jsconfig.json")


def _newest_mtime(paths) -> float:
    newest = 0.0
    for p in paths:
        p = FRONTEND / p
        if p.is_file():
            newest = max(newest, p.stat().st_mtime)
        elif p.is_dir():
            for f in p.rglob("*"):
                if f.is_file():
                    newest = max(newest, f.stat().st_mtime)
    return newest


def _run(cmd, **kw):
    env = dict(os.environ, NEXT_TELEMETRY_DISABLED="1", CI=os.environ.get("CI", ""))
    env.pop("BACKEND_INTERNAL_URL", None)
    proc = subprocess.run(cmd, cwd=FRONTEND, env=env, capture_output=True, text=True, timeout=600, **kw)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode})\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def frontend_build():
    """Run `npm ci` and `npm run build` when the standalone output is missing or stale.

    Returns the standalone directory, with .next/static and public copied in as
    the Dockerfile does, ready for `node server.js`.
    """
    require(shutil.which("npm") is not None and shutil.which("node") is not None, "node/npm not installed")
    # Test processes running side by side (pytest-xdist) build in the same tree: one at a time,
    # and the next one finds the build fresh. The lock lives outside app/, whose files are the
    # release archive (a stray file there would change its hash).
    tree = hashlib.sha256(bytes(FRONTEND)).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"provision-frontend-build-{tree}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        return _build_once()


def _build_once():
    lock = FRONTEND / "package-lock.json"
    installed = FRONTEND / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        _run(["npm", "ci", "--no-audit", "--no-fund"])
    standalone = FRONTEND / ".next" / "standalone"
    server = standalone / "server.js"
    if not server.exists() or server.stat().st_mtime < _newest_mtime(_SOURCES):
        _run(["npm", "run", "build"])
    # The standalone server does not copy static assets itself (see Dockerfile).
    shutil.copytree(FRONTEND / ".next" / "static", standalone / ".next" / "static", dirs_exist_ok=True)
    shutil.copytree(FRONTEND / "public", standalone / "public", dirs_exist_ok=True)
    return standalone


# --------------------------------------------------------------------------- loopback stack

class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(server) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


class Router:
    """Applies the ALB listener rule: /api/* to the backend, the rest to the frontend."""

    def __init__(self, backend_port: int, frontend_port: int):
        self.backend_port = backend_port
        self.frontend_port = frontend_port
        self.backend_down = False
        self.requests: list[str] = []
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _proxy(self):
                router.requests.append(self.path)
                is_api = self.path.startswith("/api/")
                if is_api and router.backend_down:
                    body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                    self.send_response(502)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                port = router.backend_port if is_api else router.frontend_port
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                headers["X-Forwarded-For"] = self.client_address[0]
                headers["X-Forwarded-Proto"] = "http"
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request(self.command, self.path, body=data, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                    conn.close()
                except OSError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _proxy

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"


class _ImagesHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def translate_path(self, path):
        # Serve app/images under /images/, like the bucket's public prefix.
        if path.startswith("/images/"):
            path = path[len("/images"):]
        else:
            path = "/__missing__"
        return super().translate_path(path)


@contextlib.contextmanager
def _loopback_stack(frontend_build, make_api):
    """API (``make_api(images_url)``) + built storefront + images host on loopback, behind the router."""
    from werkzeug.serving import make_server

    images = _QuietServer(("127.0.0.1", 0), partial(_ImagesHandler, directory=str(IMAGES)))
    images_url = f"http://127.0.0.1:{images.server_address[1]}/images/"
    _serve(images)

    app = make_api(images_url)
    api = make_server("127.0.0.1", 0, app, threaded=True)
    _serve(api)

    try:
        with storefront(frontend_build, {"NODE_ENV": "production", "NEXT_TELEMETRY_DISABLED": "1"}) as fe_port:
            router = Router(api.server_port, fe_port)
            router.app = app
            _serve(router.server)
            try:
                wait_http("127.0.0.1", router.port, "/api/health")
                yield router
            finally:
                router.server.shutdown()
                router.server.server_close()
    finally:
        for srv in (api, images):
            srv.shutdown()
            srv.server_close()


@pytest.fixture(scope="session")
def stack(frontend_build):
    """The default stack: the API with its catalogue from the JSON file."""
    from stylesphere_api import create_app
    from stylesphere_api.settings import Settings

    with _loopback_stack(frontend_build, lambda images: create_app(
            images_base_url=images, settings=Settings.from_env({}))) as router:
        yield router


@pytest.fixture(scope="session")
def postgres_stack(frontend_build, postgres_server):
    """The same stack with the API's catalogue, carts and orders in a real PostgreSQL."""
    from stylesphere_api import create_app
    from stylesphere_api.settings import Settings

    env = postgres_server.env("postgres", postgres_server.new_database())

    def make(images):
        app = create_app(images_base_url=images, settings=Settings.from_env(env))
        assert app.extensions["stylesphere"]["readiness"].wait(30), "PostgreSQL store did not start"
        return app

    with _loopback_stack(frontend_build, make) as router:
        yield router
