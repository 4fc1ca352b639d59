"""The boot script's pull path under bash with stub commands: images built once in AWS are pulled
from ECR (a login with the instance role's credentials, `docker compose pull`, `up` without a
build), and --build-on-instance renders the build path as before."""

from __future__ import annotations

import base64
import re

import pytest

import userdata
from userdata import FAILURE_MARKER, PULL_STEPS, SUCCESS_MARKER, render_bootstrap

from test_userdata_bootstrap import IMAGES, SECRETS, Machine

REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/provision/stylesphere"
TAG = "cd" * 32
ECR_PASSWORD = "stub-ecr-password"


class PullingMachine(Machine):
    def __init__(self, base, **kwargs):
        super().__init__(base, **kwargs)
        self.script.write_text(render_bootstrap(
            region="eu-west-1", release_bucket="stylesphere-assets-1", release_key=self.release_key,
            images_base_url=IMAGES, image_repository=REPOSITORY, image_tag=TAG))


@pytest.fixture()
def machine(tmp_path):
    return PullingMachine(tmp_path)


def test_first_boot_pulls_and_builds_nothing(machine):
    m = machine.run()
    assert m.rc == 0, m.console_lines
    assert m.markers() == [SUCCESS_MARKER]
    begun = [re.match(r"provision-bootstrap: step=(\w+) begin", l) for l in m.console_lines]
    assert [b.group(1) for b in begun if b] == ["init", *PULL_STEPS]
    token = m.index(r"^curl .*--aws-sigv4 aws:amz:eu-west-1:ecr -X POST .*"
                    r"X-Amz-Target: AmazonEC2ContainerRegistry_V20150921\.GetAuthorizationToken .*"
                    r"https://api\.ecr\.eu-west-1\.amazonaws\.com/$")
    login = m.index(r"^docker login --username AWS --password-stdin 123456789012\.dkr\.ecr\.eu-west-1\.amazonaws\.com$")
    # The token request and the login are one pipeline: they start together, in either order.
    order = [
        m.index(r"^apt-get .*install .*docker\.io .*docker-compose-v2"),
        m.index(r"^curl .*--aws-sigv4 aws:amz:eu-west-1:s3 .*/releases/"),
        min(token, login),
        max(token, login),
        m.index(r"^docker compose .* pull"),
        m.index(r"^docker compose .* up --no-build -d"),
        m.index(r"^curl .*http://127\.0\.0\.1:5000/api/health"),
    ]
    assert order == sorted(order), "\n".join(m.calls)
    assert not m.called(r"^docker compose .* build"), "\n".join(m.calls)
    assert not m.called(r"--build")
    # No buildx, nothing to build with.
    assert not m.called(r"^apt-get .*docker-buildx")
    # The images compose runs: the release's tag, one per service.
    env = (m.app_dir / ".env").read_text().splitlines()
    assert f"BACKEND_IMAGE='{REPOSITORY}:{TAG}-backend'" in env
    assert f"FRONTEND_IMAGE='{REPOSITORY}:{TAG}-frontend'" in env


def test_the_ecr_password_and_the_credentials_never_show(machine):
    m = machine.run()
    assert m.rc == 0
    # The password went to docker on stdin, decoded from the token; the credentials to curl.
    assert (m.state / "docker-login-password").read_text() == ECR_PASSWORD
    config = (m.state / "ecr-curl-config").read_text()
    assert 'user = "ASIASTUBKEYID:stub/secret+KEY"' in config
    exposed = "\n".join(m.calls) + m.log + "\n".join(m.console_lines) + m.script.read_text()
    token = base64.b64encode(f"AWS:{ECR_PASSWORD}".encode()).decode()
    for secret in (*SECRETS, ECR_PASSWORD, token):
        assert secret not in exposed


@pytest.mark.parametrize("fail,step,not_after", [
    ("ecr", "pull", r"^docker compose .* pull"),
    ("login", "pull", r"^docker compose .* pull"),
    ("pull", "pull", r" up --no-build"),
    ("start", "start", r"127\.0\.0\.1:5000"),
])
def test_a_failed_pull_prints_one_failure_marker(machine, fail, step, not_after):
    m = machine.run(fail=fail)
    assert m.rc != 0
    assert m.markers() == [f"{FAILURE_MARKER} step={step}"], m.console_lines
    assert not m.called(not_after)


def test_second_run_pulls_again_and_installs_nothing(machine):
    assert machine.run().rc == 0
    second = machine.run()
    assert second.rc == 0 and second.markers() == [SUCCESS_MARKER]
    assert not second.called(r"^apt-get ")
    assert second.called(r"^docker compose .* pull")


def test_rendered_pull_script_fits_and_budgets_the_pull():
    script = render_bootstrap(region="eu-west-1", release_bucket="stylesphere-assets-1",
                              release_key=f"releases/{TAG}.tar.gz", images_base_url=IMAGES,
                              image_repository=REPOSITORY, image_tag=TAG)
    assert len(script.encode()) < userdata.USER_DATA_LIMIT
    assert userdata.encode_user_data(script) == script.encode()
    assert f"BUDGET={userdata.DEFAULT_PULL_GRACE_PERIOD_SECONDS - userdata.BOOT_MARGIN_SECONDS}\n" in script
    assert userdata.image_tag_of(script) == TAG
    for step in PULL_STEPS:
        assert f"begin {step} " in script
    with pytest.raises(ValueError, match="grace period"):
        render_bootstrap(region="eu-west-1", release_bucket="stylesphere-assets-1",
                         release_key=f"releases/{TAG}.tar.gz", images_base_url=IMAGES, image_repository=REPOSITORY,
                         image_tag=TAG, grace_period_seconds=userdata.MIN_PULL_GRACE_PERIOD_SECONDS - 1)


@pytest.mark.parametrize("repository,tag", [
    ("docker.io/library/nginx", TAG), (REPOSITORY, "latest"), (REPOSITORY + "; rm -rf /", TAG), (None, TAG)])
def test_pull_values_are_checked(repository, tag):
    with pytest.raises(ValueError):
        render_bootstrap(region="eu-west-1", release_bucket="stylesphere-assets-1",
                         release_key=f"releases/{TAG}.tar.gz", images_base_url=IMAGES,
                         image_repository=repository, image_tag=tag)


def test_build_on_instance_renders_the_build_path():
    script = render_bootstrap(region="eu-west-1", release_bucket="stylesphere-assets-1",
                              release_key=f"releases/{TAG}.tar.gz", images_base_url=IMAGES)
    assert userdata.image_tag_of(script) is None
    assert "IMAGE_REPOSITORY=''\n" in script
    assert f"BUDGET={userdata.DEFAULT_GRACE_PERIOD_SECONDS - userdata.BOOT_MARGIN_SECONDS}\n" in script


def test_pull_path_shellcheck(tmp_path):
    import subprocess

    from test_userdata_render import _require_tool

    path = tmp_path / "bootstrap.sh"
    path.write_text(render_bootstrap(region="eu-west-1", release_bucket="stylesphere-assets-1",
                                     release_key=f"releases/{TAG}.tar.gz", images_base_url=IMAGES,
                                     image_repository=REPOSITORY, image_tag=TAG))
    subprocess.run(["bash", "-n", str(path)], check=True)
    shellcheck = _require_tool("shellcheck")
    proc = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
