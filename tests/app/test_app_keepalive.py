"""Both servers keep idle connections open longer than the load balancer does.

The ALB reuses idle connections to a target for its idle timeout; a server that
closes one sooner races the ALB's next request on it, which the ALB answers with
a 502. The settings are read from what ships (the Dockerfile, the compose file,
gunicorn.conf.py), not repeated here.
"""

import http.client
import runpy
import socket
import time

from app_test_support import BACKEND, compose_service, container_env, storefront
from steps.edge.load_balancer import ATTRIBUTES

# The listener's idle timeout: the stack leaves it at the ALB default unless it sets it.
ALB_IDLE_SECONDS = int(ATTRIBUTES.get("idle_timeout.timeout_seconds", "60"))

# Longer than Node's default keep-alive (5 s), short enough to keep the test quick.
IDLE_WAIT = 6.5


def _get(sock: socket.socket, path: str) -> http.client.HTTPResponse:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".encode())
    resp = http.client.HTTPResponse(sock, method="GET")
    resp.begin()
    resp.read()
    return resp


def _peer_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def test_frontend_keep_alive_outlasts_the_load_balancer():
    value = container_env("frontend").get("KEEP_ALIVE_TIMEOUT")
    assert value, "the frontend container sets no KEEP_ALIVE_TIMEOUT; Node's default is 5 s"
    assert int(value) > ALB_IDLE_SECONDS * 1000, (value, ALB_IDLE_SECONDS)


def test_frontend_keeps_an_idle_connection_open(frontend_build):
    env = container_env("frontend")
    with storefront(frontend_build, env, log_name="test-keepalive.log") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            first = _get(sock, "/healthz")
            assert first.status == 200
            if "KEEP_ALIVE_TIMEOUT" in env and first.getheader("Keep-Alive"):
                assert first.getheader("Keep-Alive") == f"timeout={int(env['KEEP_ALIVE_TIMEOUT']) // 1000}"
            time.sleep(IDLE_WAIT)
            assert not _peer_closed(sock), (
                f"the storefront closed an idle keep-alive connection within {IDLE_WAIT} s "
                f"(KEEP_ALIVE_TIMEOUT={env.get('KEEP_ALIVE_TIMEOUT')!r})")
            try:
                second = _get(sock, "/healthz")
            except (OSError, http.client.HTTPException) as exc:
                raise AssertionError(f"second request on the kept-alive connection failed: {exc!r}") from exc
            assert second.status == 200


def test_backend_keepalive_outlasts_the_load_balancer():
    config = runpy.run_path(str(BACKEND / "gunicorn.conf.py"))
    assert config["keepalive"] > ALB_IDLE_SECONDS, config["keepalive"]
    # The image runs gunicorn with that file, and compose does not replace the command.
    dockerfile = (BACKEND / "Dockerfile").read_text()
    assert '"--config", "gunicorn.conf.py"' in dockerfile
    assert "command" not in compose_service("backend")
