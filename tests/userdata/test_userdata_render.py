"""render_bootstrap / encode_user_data: quoting, validation, size, static checks."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess

import pytest

import userdata
from userdata import encode_user_data, render_bootstrap

ARGS = dict(
    region="eu-west-1",
    release_bucket="stylesphere-assets-123456789012",
    release_key="releases/" + "ab" * 32 + ".tar.gz",
    images_base_url="https://stylesphere-assets-123456789012.s3.eu-west-1.amazonaws.com/images/",
)


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is not installed (required when CI=true)")
    pytest.skip(f"{name} is not installed")


def test_render_fills_every_value_quoted():
    script = render_bootstrap(**ARGS)
    assert script.startswith("#!/bin/bash\n")
    assert "@@" not in script
    assert "REGION=eu-west-1\n" in script
    assert f"RELEASE_BUCKET={ARGS['release_bucket']}\n" in script
    assert f"RELEASE_KEY={ARGS['release_key']}\n" in script
    assert f"IMAGES_BASE_URL={ARGS['images_base_url']}\n" in script
    assert "APP_SOURCE=''\n" in script
    assert "PROJECT=stylesphere\n" in script


def test_git_source_and_stack_name():
    script = render_bootstrap(**ARGS, app_source="git+https://github.com/example/stylesphere.git#main",
                              stack="StyleSphere Prod!")
    assert "APP_SOURCE='git+https://github.com/example/stylesphere.git#main'\n" in script
    assert "PROJECT=stylesphere-prod\n" in script


@pytest.mark.parametrize("field,value", [
    ("region", "eu-west-1; reboot"),
    ("region", ""),
    ("release_bucket", "Bad_Bucket"),
    ("release_bucket", "with.dots.bucket"),
    ("release_key", "../etc/passwd"),
    ("release_key", "releases/$(reboot).tar.gz"),
    ("release_key", "releases/a b.tar.gz"),
    ("images_base_url", "https://x/images/'; reboot; '"),
    ("images_base_url", "ftp://x/images/"),
    ("images_base_url", "https://x/images/\nEVIL=1"),
    ("app_source", "https://github.com/example/repo.git"),
    ("app_source", "git+https://github.com/x/y.git#$(reboot)"),
    ("app_source", "git+ssh://git@github.com/x/y.git"),
    ("stack", "   "),
])
def test_unsafe_values_are_rejected(field, value):
    with pytest.raises(ValueError):
        render_bootstrap(**{**ARGS, field: value})


def test_script_holds_no_credentials_or_presigned_urls():
    script = render_bootstrap(**ARGS)
    for bad in ("AKIA", "ASIA", "aws_secret_access_key", "X-Amz-Signature", "X-Amz-Credential"):
        assert bad not in script
    assert "--aws-sigv4" in script
    assert "169.254.169.254/latest/api/token" not in script or "X-aws-ec2-metadata-token-ttl-seconds" in script


def test_rendered_size_fits_user_data_uncompressed():
    script = render_bootstrap(**ARGS, app_source="git+https://github.com/example/stylesphere.git")
    assert len(script.encode()) < userdata.USER_DATA_LIMIT
    assert encode_user_data(script) == script.encode()


def test_encode_compresses_large_scripts():
    script = render_bootstrap(**ARGS) + "\n".join(f"# filler line {i}" for i in range(2000)) + "\n"
    assert len(script.encode()) > userdata.USER_DATA_LIMIT
    data = encode_user_data(script)
    assert data[:2] == b"\x1f\x8b"
    assert len(data) <= userdata.USER_DATA_LIMIT
    assert gzip.decompress(data).decode() == script


def test_encode_rejects_what_gzip_cannot_fit():
    noise = os.urandom(40_000).hex()
    with pytest.raises(ValueError):
        encode_user_data("#!/bin/bash\n# " + noise + "\n")


def test_constants_agree_with_script():
    script = render_bootstrap(**ARGS)
    assert userdata.SUCCESS_MARKER in script and userdata.FAILURE_MARKER in script
    for step in userdata.STEPS:
        assert f"begin {step} " in script
    assert userdata.LOG_PATH in script



def test_the_boot_is_budgeted_inside_the_grace_period():
    default = render_bootstrap(**ARGS)
    assert f"BUDGET={userdata.DEFAULT_GRACE_PERIOD_SECONDS - userdata.BOOT_MARGIN_SECONDS}\n" in default
    longer = render_bootstrap(**ARGS, grace_period_seconds=1200)
    assert f"BUDGET={1200 - userdata.BOOT_MARGIN_SECONDS}\n" in longer
    assert userdata.DEFAULT_GRACE_PERIOD_SECONDS - userdata.BOOT_MARGIN_SECONDS > userdata.HEALTH_WAIT_SECONDS
    with pytest.raises(ValueError, match="grace period"):
        render_bootstrap(**ARGS, grace_period_seconds=userdata.MIN_GRACE_PERIOD_SECONDS - 1)


@pytest.mark.parametrize("source", [None, "git+https://github.com/example/stylesphere.git#v1.2"])
def test_bash_n_and_shellcheck(tmp_path, source):
    path = tmp_path / "bootstrap.sh"
    path.write_text(render_bootstrap(**ARGS, app_source=source))
    subprocess.run(["bash", "-n", str(path)], check=True)
    shellcheck = _require_tool("shellcheck")
    proc = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
