"""Shared paths and helpers for the StyleSphere app tests."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
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


@contextlib.contextmanager
def storefront(standalone: Path, env: dict, log_name: str = "test-server.log"):
    """Run the standalone `node server.js` on 127.0.0.1 with `env` over this process's
    environment; yields its port once /healthz answers."""
    port = free_port()
    full_env = {**os.environ, **env, "PORT": str(port), "HOSTNAME": "127.0.0.1"}
    with open(standalone.parent / log_name, "w") as log:
        node = subprocess.Popen(["node", "server.js"], cwd=standalone, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http("127.0.0.1", port, "/healthz", timeout=60)
            yield port
        finally:
            node.terminate()
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()


# --------------------------------------------------------------------------- Dockerfiles

@dataclass
class Stage:
    image: str  # the FROM reference, build args substituted
    name: str | None
    env: dict = field(default_factory=dict)  # ENV of this stage and the local stages it builds on


def _instructions(text: str):
    """(INSTRUCTION, arguments) per logical line: comments dropped, continuations joined."""
    def split(logical):
        word, _, rest = logical.strip().partition(" ")
        return word.upper(), rest.strip()

    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continued instruction, as Docker does
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        yield split(logical + line)
        logical = ""
    if logical.strip():
        yield split(logical)


def _substitute(value: str, args: dict) -> str:
    """$NAME, ${NAME} and ${NAME:-default} from the build args' defaults."""
    def one(m):
        name = m.group(1) or m.group(3)
        return args.get(name) or (m.group(2) if m.group(2) is not None else "")
    return re.sub(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))", one, value)


def _pairs(rest: str) -> dict:
    words = shlex.split(rest)
    if words and "=" not in words[0]:  # the legacy `ENV KEY value` form
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def dockerfile_stages(path: Path) -> list[Stage]:
    return parse_stages(path.read_text())


def parse_stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile in order, enough of it to check base images and ENV."""
    args: dict = {}  # ARGs before the first FROM are the ones FROM lines can use
    stages: list[Stage] = []
    for word, rest in _instructions(text):
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip("\"'")
        elif word == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = _substitute(words[0], args)
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            parent = next((s for s in stages if s.name and s.name.lower() == image.lower()), None)
            stages.append(Stage(image, name, dict(parent.env) if parent else {}))
        elif word == "ENV" and stages:
            stages[-1].env.update(_pairs(rest))
    return stages


DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def registry_host(image: str) -> str | None:
    """The registry an image reference pulls from; None means Docker Hub's default."""
    first, slash, _ = image.partition("/")
    # Docker's rule: the first component is a host only if it has a dot or a port, or is localhost.
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def docker_hub_pulls(text: str) -> list[str]:
    """The FROM images of a Dockerfile that would be pulled from Docker Hub."""
    found, earlier = [], set()
    for stage in parse_stages(text):
        image = stage.image
        local = image.lower() in earlier or image == "scratch"
        if not local and (registry_host(image) is None or registry_host(image) in DOCKER_HUB_HOSTS):
            found.append(image)
        if stage.name:
            earlier.add(stage.name.lower())
    return found


def dockerfiles() -> list[Path]:
    """Every Dockerfile of the app, not those inside installed packages or build output."""
    found = []
    for root, dirs, files in os.walk(APP):
        dirs[:] = [d for d in dirs if d not in ("node_modules", ".next", "__pycache__")]
        found += [Path(root) / f for f in files
                  if f == "Dockerfile" or f.startswith("Dockerfile.") or f.endswith(".Dockerfile")]
    return sorted(found)


# --------------------------------------------------------------------------- the containers' environment

def compose_service(name: str) -> dict:
    import yaml

    return yaml.safe_load((APP / "docker-compose.yml").read_text())["services"][name]


def container_env(service: str) -> dict:
    """What a service's container starts with: its image's final-stage ENV, then compose's
    `environment` over it (`${VAR:-default}` as compose reads it with VAR unset)."""
    env = dict(dockerfile_stages(APP / service / "Dockerfile")[-1].env)
    declared = compose_service(service).get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    env.update({k: _substitute(str(v), {}) for k, v in declared.items() if v is not None})
    return env
