"""Boot script for the StyleSphere instances (launch template user data).

``render_bootstrap`` fills ``bootstrap.sh.tmpl`` (package data next to this
file) with the stack's values, shell-quoted; ``encode_user_data`` turns the
script into launch-template user data, gzip-compressed when needed to fit the
16 KB limit.

The rendered script contains no credentials. It reads the app release from
``s3://<release_bucket>/<release_key>`` with the instance role (IMDSv2 and
``curl --aws-sigv4``), so the instance profile needs ``s3:GetObject`` on that
key (or its ``releases/`` prefix). Given ``image_repository`` and ``image_tag``
it pulls ``<image_repository>:<image_tag>-backend`` and ``-frontend`` (built
once in AWS) instead of building them, logging in to ECR with the same role:
``ecr:GetAuthorizationToken`` and the pull actions on that repository.
"""

from __future__ import annotations

import gzip
import re
import shlex
from importlib import resources

__all__ = [
    "render_bootstrap",
    "encode_user_data",
    "USER_DATA_LIMIT",
    "DEFAULT_GRACE_PERIOD_SECONDS",
    "MIN_GRACE_PERIOD_SECONDS",
    "DEFAULT_PULL_GRACE_PERIOD_SECONDS",
    "MIN_PULL_GRACE_PERIOD_SECONDS",
    "PULL_STEPS",
    "image_tag_of",
    "BOOT_MARGIN_SECONDS",
    "HEALTH_WAIT_SECONDS",
    "SUCCESS_MARKER",
    "FAILURE_MARKER",
    "STEPS",
    "LOG_PATH",
]

#: EC2 limit on user data, before base64 encoding.
USER_DATA_LIMIT = 16 * 1024

#: The Auto Scaling Group's health check grace period, by default. The whole first boot (Docker
#: install, image builds, health wait) must fit inside it: an instance still building when it
#: ends is marked unhealthy and replaced, and its replacement starts the build over (the 502s of
#: the original build).
DEFAULT_GRACE_PERIOD_SECONDS = 600
#: A shorter grace period cannot fit a first boot at all.
MIN_GRACE_PERIOD_SECONDS = 300
#: The same when the instance pulls images built in AWS: the Docker install (about a minute),
#: the pull (about 200 MB through the NAT gateway, well under a minute) and the health wait.
DEFAULT_PULL_GRACE_PERIOD_SECONDS = 360
MIN_PULL_GRACE_PERIOD_SECONDS = 240
#: Taken off the grace period for the instance's own start before cloud-init runs user data.
BOOT_MARGIN_SECONDS = 60
#: Time allowed for both health endpoints to answer after ``docker compose up``.
HEALTH_WAIT_SECONDS = 90
#: Swap file created before building.
SWAP_MB = 2048

#: Final console markers (exactly one per run) and the step names, in order.
SUCCESS_MARKER = "PROVISION-BOOTSTRAP-OK"
FAILURE_MARKER = "PROVISION-BOOTSTRAP-FAILED"
STEPS = ("swap", "docker", "fetch", "build", "start", "health")
PULL_STEPS = ("swap", "docker", "fetch", "pull", "start", "health")
#: Progress lines on the console start with this prefix: ``provision-bootstrap: step=<name> ...``.
PROGRESS_PREFIX = "provision-bootstrap:"
LOG_PATH = "/var/log/provision-bootstrap.log"

_TEMPLATE = "bootstrap.sh.tmpl"
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
# Virtual-hosted-style HTTPS needs a bucket name without dots.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# Keys are put in the URL as-is, so only characters that need no encoding.
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,511}$")
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?(/[A-Za-z0-9._~\-/%]*)?$")
# An ECR repository URI: <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<name>; a release's hash.
_REPOSITORY_RE = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/-]{0,255}$")
_IMAGE_TAG_RE = re.compile(r"^[0-9a-f]{64}$")
# The backend's settings in .env: plain names, and values docker compose reads as written (ARNs,
# host names, identifiers: no quotes, spaces, `$` or `#`).
_ENV_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_ENV_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/@!+=,-]{0,512}$")
_RESERVED_ENV = frozenset({"IMAGES_BASE_URL", "APP_RELEASE", "BACKEND_IMAGE", "FRONTEND_IMAGE"})
_GIT_RE = re.compile(r"^git\+https://[A-Za-z0-9.\-]+(:\d+)?/[A-Za-z0-9._~\-/%@+]+(#[A-Za-z0-9._\-/]+)?$")


def _project_name(stack: str) -> str:
    """A Docker Compose project name (lowercase letters, digits, '-', '_') from the stack name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", stack.strip().lower()).strip("-_")
    return name[:48] or "stylesphere"


def render_bootstrap(*, region: str, release_bucket: str, release_key: str, images_base_url: str,
                     app_source: str | None = None, stack: str = "stylesphere",
                     grace_period_seconds: int | None = None, image_repository: str | None = None,
                     image_tag: str | None = None, app_environment: dict[str, str] | None = None) -> str:
    """The bootstrap shell script text, with values shell-quoted safely.

    ``app_source`` may be ``git+https://host/owner/repo.git`` (optionally with
    ``#branch-or-tag``) to clone a repository instead of fetching the release
    from S3; the repository holds the compose app at its root or under ``app/``.
    ``image_repository`` (an ECR repository URI) and ``image_tag`` (the
    release's SHA-256) make it pull the images instead of building them; the
    grace period then defaults to DEFAULT_PULL_GRACE_PERIOD_SECONDS.
    ``app_environment`` adds settings of the backend container (the data
    tier's: ``DATABASE_ENGINE``, ``CATALOG``, ...) to the compose file's .env;
    names and values are checked, and none of them may be a secret (the
    backend reads secrets from Secrets Manager by ARN).
    Raises ValueError for values that cannot be used safely.
    """
    pull = bool(image_repository or image_tag)
    if pull and not (_REPOSITORY_RE.match(image_repository or "") and _IMAGE_TAG_RE.match(image_tag or "")):
        raise ValueError(f"pulling needs an ECR repository URI and a SHA-256 tag: {image_repository!r}, {image_tag!r}")
    if grace_period_seconds is None:
        grace_period_seconds = DEFAULT_PULL_GRACE_PERIOD_SECONDS if pull else DEFAULT_GRACE_PERIOD_SECONDS
    minimum = MIN_PULL_GRACE_PERIOD_SECONDS if pull else MIN_GRACE_PERIOD_SECONDS
    if not _REGION_RE.match(region or ""):
        raise ValueError(f"invalid AWS region: {region!r}")
    if not _BUCKET_RE.match(release_bucket or ""):
        raise ValueError(f"invalid release bucket name (lowercase, digits, '-', no dots): {release_bucket!r}")
    if not _KEY_RE.match(release_key or "") or ".." in release_key or "//" in release_key:
        raise ValueError(f"invalid release key: {release_key!r}")
    if not _URL_RE.match(images_base_url or ""):
        raise ValueError(f"invalid images base URL: {images_base_url!r}")
    if app_source is not None and app_source != "" and not _GIT_RE.match(app_source):
        raise ValueError(f"app source must look like git+https://host/owner/repo.git[#ref]: {app_source!r}")
    if not isinstance(stack, str) or not stack.strip():
        raise ValueError("stack name must not be empty")
    if not isinstance(grace_period_seconds, int) or grace_period_seconds < minimum:
        raise ValueError(f"the grace period must be at least {minimum}s to fit a first boot, "
                         f"got {grace_period_seconds!r}")

    environment = dict(app_environment or {})
    for name, value in environment.items():
        if not _ENV_NAME_RE.match(name) or name in _RESERVED_ENV:
            raise ValueError(f"invalid app setting name: {name!r}")
        if not isinstance(value, str) or not _ENV_VALUE_RE.match(value):
            raise ValueError(f"invalid value for app setting {name}: {value!r}")
    values = {
        "APP_ENVIRONMENT": "".join(f"{name}={value}\n" for name, value in sorted(environment.items())),
        "SHARED_FILES": environment.get("SHARED_FILES_ID", ""),
        "APP_LOG_GROUP": environment.get("AWSLOGS_GROUP", ""),
        "REGION": region,
        "RELEASE_BUCKET": release_bucket,
        "RELEASE_KEY": release_key,
        "IMAGES_BASE_URL": images_base_url,
        "APP_SOURCE": app_source or "",
        "PROJECT": _project_name(stack),
        "IMAGE_REPOSITORY": image_repository or "",
        "IMAGE_TAG": image_tag or "",
        "BUDGET": str(grace_period_seconds - BOOT_MARGIN_SECONDS),
        "HEALTH_WAIT": str(HEALTH_WAIT_SECONDS),
        "HEALTH_TRIES": str(max(1, HEALTH_WAIT_SECONDS // 5)),
        "SWAP_MB": str(SWAP_MB),
    }
    script = resources.files(__name__).joinpath(_TEMPLATE).read_text(encoding="utf-8")
    for name, value in values.items():
        placeholder = f"@@{name}@@"
        if placeholder not in script:
            raise RuntimeError(f"template lacks {placeholder}")
        # shlex.quote gives '' for an empty string, and single quotes otherwise.
        script = script.replace(placeholder, shlex.quote(value))
    leftover = re.search(r"@@[A-Z_]+@@", script)
    if leftover:
        raise RuntimeError(f"template placeholder not filled: {leftover.group(0)}")
    return script


def image_tag_of(script: str | None) -> str | None:
    """The image tag a rendered script pulls (None: it builds on the instance)."""
    match = re.search(r"^IMAGE_TAG='?([0-9a-f]{64})'?$", script or "", re.MULTILINE)
    return match.group(1) if match else None


def encode_user_data(script: str) -> bytes:
    """Bytes to put (base64'd by the caller) in a launch template's UserData.

    The script as-is if it fits 16 KB, else gzip (cloud-init accepts gzip user
    data); raises ValueError if even gzip is too big.
    """
    raw = script.encode("utf-8")
    if len(raw) <= USER_DATA_LIMIT:
        return raw
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    if len(packed) <= USER_DATA_LIMIT:
        return packed
    raise ValueError(
        f"user data too large: {len(raw)} bytes, {len(packed)} bytes gzipped; limit {USER_DATA_LIMIT}"
    )
