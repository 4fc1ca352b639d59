"""The bootstrap under bash with the app's log group (--monitoring): the compose file's .env
names the group, its region and this instance's id (from IMDSv2), and every compose call adds
the awslogs override; without the group, neither."""

from __future__ import annotations

from userdata import SUCCESS_MARKER, render_bootstrap

from test_userdata_bootstrap import IMAGES, Machine

GROUP = "/provision/stylesphere/app"


def with_group(machine: Machine) -> Machine:
    machine.script.write_text(render_bootstrap(
        region="eu-west-1", release_bucket="stylesphere-assets-1", release_key=machine.release_key,
        images_base_url=IMAGES, app_environment={"AWSLOGS_GROUP": GROUP, "AWSLOGS_REGION": "eu-west-1"}))
    return machine


def test_the_env_names_the_group_and_the_instance_and_compose_adds_the_override(tmp_path):
    m = with_group(Machine(tmp_path)).run()
    assert m.rc == 0, m.console_lines
    assert m.markers() == [SUCCESS_MARKER]
    env = (m.app_dir / ".env").read_text().splitlines()
    assert f"AWSLOGS_GROUP={GROUP}" in env and "AWSLOGS_REGION=eu-west-1" in env
    assert "AWSLOGS_INSTANCE=i-0stub1234567890ab" in env
    # The instance id came from IMDSv2 (a session token), not from a guess.
    assert m.called(r"^curl .*X-aws-ec2-metadata-token: imds-session-token.*/latest/meta-data/instance-id$")
    ups = [c for c in m.calls if c.startswith("docker compose") and " up " in f" {c} "]
    assert ups and all("docker-compose.awslogs.yml" in c for c in ups)


def test_without_the_group_the_compose_app_logs_as_before(tmp_path):
    m = Machine(tmp_path).run()
    assert m.rc == 0, m.console_lines
    assert "AWSLOGS" not in (m.app_dir / ".env").read_text()
    assert not m.called(r"docker-compose\.awslogs\.yml") and not m.called(r"meta-data/instance-id")
