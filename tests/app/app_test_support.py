"""Shared paths and helpers for the StyleSphere app tests."""

from __future__ import annotations

import http.client
import os
import socket
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
BACKEND = APP / "backend"
FRONTEND = APP / "frontend"
IMAGES = APP / "images"
ARTIFACTS = REPO / "tests" / "artifacts"

if str(BACKEND) not in sys.path:
    sys.path.insert(0, str(BACKEND))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip locally when a tool is missing; fail in CI, where it must be there."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url_host: str, port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(url_host, port, timeout=2)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status < 500:
                return
            last = f"status {resp.status}"
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"http://{url_host}:{port}{path} did not come up: {last}")
