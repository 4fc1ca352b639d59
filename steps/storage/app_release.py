import fnmatch
import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import lookup

from steps.storage.s3_bucket import OBJECT_IAM, RELEASES_PREFIX

APP_DIR_ENV = "PROVISION_APP_DIR"
COMPOSE_FILE = "docker-compose.yml"
# Built or installed on the instance, secrets, caches and test output: never shipped. The
# instance builds node_modules and .next itself (docker compose build), and a developer's .env
# must not reach S3.
EXCLUDED_DIRS = frozenset({
    "node_modules", ".next", "__pycache__", ".git", ".hg", ".svn", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".venv", "venv", ".tox", ".cache", ".turbo", "coverage", "artifacts", ".idea", ".vscode",
    # The backend's receipts in a local run (docker compose mounts ./shared without EFS).
    "shared",
})
EXCLUDED_FILES = ("*.pyc", "*.pyo", ".env", ".env.*", ".DS_Store", "npm-debug.log*", "*.swp", "*~",
                  ".coverage")
# An example file documents the variables and holds no secret.
KEPT_FILES = ("*.example", "*.sample")


def app_dir() -> Path:
    """The app to ship: $PROVISION_APP_DIR, else the repository's app/ next to the provisioner
    package, else ./app; the first one holding a docker-compose.yml."""
    given = os.environ.get(APP_DIR_ENV)
    if given:
        path = Path(given).expanduser()
        if not (path / COMPOSE_FILE).is_file():
            raise ConfigError(f"{APP_DIR_ENV}={given} has no {COMPOSE_FILE}",
                              hint=f"point {APP_DIR_ENV} at the app directory (the one with {COMPOSE_FILE})")
        return path.resolve()
    import provisioner

    candidates = [Path(provisioner.__file__).resolve().parents[1] / "app", Path.cwd() / "app"]
    for path in candidates:
        if (path / COMPOSE_FILE).is_file():
            return path.resolve()
    raise ConfigError(f"no app directory with a {COMPOSE_FILE} found (looked in "
                      f"{', '.join(str(p) for p in candidates)})",
                      hint=f"run from a clone of the repository, or set {APP_DIR_ENV} to the app directory")


def excluded(name: str, is_dir: bool) -> bool:
    if is_dir:
        return name in EXCLUDED_DIRS or name.endswith(".egg-info")
    if any(fnmatch.fnmatch(name, pattern) for pattern in KEPT_FILES):
        return False
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDED_FILES)


def pack_app(root: Path) -> bytes:
    """The app as a .tar.gz whose bytes depend on the content only: entries sorted, times,
    owners and the gzip header zeroed. So an unchanged app hashes the same and is not uploaded
    again, and the instances can check the archive against the hash in its key."""
    buffer = io.BytesIO()
    # filename="" and mtime=0: the gzip header would otherwise carry both.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, arcname in _entries(root):
                _add(tar, path, arcname)
    return buffer.getvalue()


def _entries(root: Path):
    def walk(directory: Path, prefix: str):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            is_dir = entry.is_dir(follow_symlinks=False)
            if excluded(entry.name, is_dir):
                continue
            arcname = f"{prefix}{entry.name}"
            yield Path(entry.path), arcname
            if is_dir:
                yield from walk(Path(entry.path), arcname + "/")

    yield from walk(root, "")


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(path)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        # Only the executable bit survives; umask and owner differences must not change the hash.
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
        info.size = st.st_size
        with open(path, "rb") as f:
            tar.addfile(info, f)
    # Sockets, fifos and devices are no part of an app.


def release_key(sha256: str) -> str:
    return f"{RELEASES_PREFIX}{sha256}.tar.gz"


@register
class AppRelease(Step):
    """The app directory packed and uploaded under releases/<sha256>.tar.gz (private)."""

    kind = "app_release"
    # A missing key is a success in S3; a missing bucket takes its objects with it.
    gone_codes = frozenset({"NoSuchBucket"})
    aws_type = "AWS::S3::Object"
    found_through = "bucket"
    iam = OBJECT_IAM
    tagged = False

    def __init__(self):
        super().__init__("app-release", depends_on=("assets-bucket",))

    def _local(self):
        archive = pack_app(app_dir())
        return archive, hashlib.sha256(archive).hexdigest()

    def find_all(self, ctx, known_id):
        bucket = ctx.dep("assets-bucket")
        if bucket is None:
            return []
        try:
            key = release_key(self._local()[1])
        except ConfigError:
            # No app here (e.g. `down` from another directory): what the state knows. `up`
            # fails on it in create, with the hint.
            key = known_id
        if not key:
            return []
        head = lookup(ctx.client("s3").head_object, Bucket=bucket.id, Key=key,
                      gone=frozenset({"404", "NoSuchKey", "NoSuchBucket"}))
        if head is None:
            return []
        # A changed app has another key: it is not found, and create uploads it. The previous
        # release stays until `down` empties the bucket, for instances still launched from it.
        return [self._resource(bucket.id, key, head["ContentLength"])]

    def _resource(self, bucket, key, size):
        sha256 = key[len(RELEASES_PREFIX):-len(".tar.gz")]
        return Resource(id=key, attrs={"bucket": bucket, "key": key, "sha256": sha256, "size": size})

    def create(self, ctx):
        bucket = ctx.dep("assets-bucket").id
        archive, sha256 = self._local()
        key = release_key(sha256)
        ctx.client("s3").put_object(
            Bucket=bucket, Key=key, Body=archive, ContentType="application/gzip",
            # S3 checks the upload against it, so a corrupted upload fails here, not on boot.
            ChecksumAlgorithm="SHA256")
        return self._resource(bucket, key, len(archive))

    def delete(self, ctx, resource):
        ctx.client("s3").delete_object(Bucket=resource.attrs["bucket"], Key=resource.id)

    def outputs(self, resource):
        return {"release_key": resource.id}

    def describe(self, resource):
        return f"s3://{resource.attrs['bucket']}/{resource.id} ({resource.attrs.get('size', 0)} bytes)"
