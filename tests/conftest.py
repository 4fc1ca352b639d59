"""Shared fixtures: moto in-process (never the network), the strict fixture that makes moto refuse
what AWS refuses, and stacks to run the engine on (see stacks.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from moto import mock_aws

from provisioner.sandbox import emulator

from stacks import POLL, REGION, Stack
from strict import StrictAws

emulator.apply()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """No test may reach a real account or read the developer's AWS config."""
    for var in list(os.environ):
        if var.startswith("AWS_") or var.startswith("PROVISION_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("PROVISION_POLL_INTERVAL", str(POLL))
    monkeypatch.setenv("PROVISION_SANDBOX_DIR", str(tmp_path / "sandbox"))
    # Nor the developer's own allow-list or refreshed price table.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture
def moto_aws():
    with mock_aws():
        yield


@pytest.fixture
def strict(moto_aws):
    """The strict rules for every session made by `make_stack` in this test."""
    return StrictAws(region=REGION)


@pytest.fixture
def make_stack(tmp_path, strict):
    def make(name="stylesphere", **kwargs):
        return Stack(name, tmp_path / "state", strict, **kwargs)
    return make


APP_TESTS = Path(__file__).parent / "app"


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (`--dist loadgroup`), the app's tests share one process: its real
    PostgreSQL, MariaDB and Redis servers and the storefront's build start once, not once per
    process; the engine's tests on moto spread over the others."""
    for item in items:
        if item.path.is_relative_to(APP_TESTS):
            item.add_marker(pytest.mark.xdist_group("app"))
