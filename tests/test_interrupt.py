"""Ctrl-C at any point: the run stops at the next AWS call, keeps what finished, and exits 130;
the next run finishes the job without duplicates."""

from __future__ import annotations

import os
import signal

import pytest
from click.testing import CliRunner

from stacks import count_tagged, outcomes, tagged_leftovers
from provisioner.engine.errors import Interrupted
from provisioner.engine.state import StateFile


class CtrlCOnce:
    def __init__(self):
        self.fired = False

    def __call__(self, **_):
        if not self.fired:
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread, as a real Ctrl-C


def test_ctrl_c_during_up_saves_state_and_the_next_up_finishes(make_stack):
    ctrl_c = CtrlCOnce()
    stack = make_stack(hooks=[("after-call.ec2.CreateNatGateway", ctrl_c)])
    with pytest.raises(Interrupted):
        stack.up()
    assert ctrl_c.fired
    saved = stack.state_file.read().resources
    assert "vpc" in saved and "public-subnet-1" in saved
    assert "private-route-table-1" not in saved  # it waits for the NAT gateway: never started

    results = make_stack().up()
    assert all(r.ok for r in results)
    assert outcomes(results)["vpc"] == "kept"
    assert all(n == 1 for n in count_tagged("stylesphere").values())
    assert all(r.ok for r in make_stack().down())
    assert tagged_leftovers("stylesphere") == []


def test_ctrl_c_during_down_then_down_again(make_stack):
    stack = make_stack()
    stack.up()
    ctrl_c = CtrlCOnce()
    stack.hooks.append(("after-call.ec2.DeleteNatGateway", ctrl_c))
    with pytest.raises(Interrupted):
        stack.down()
    assert ctrl_c.fired
    assert all(r.ok for r in make_stack().down())
    assert tagged_leftovers("stylesphere") == []


def test_cli_exits_130_on_interrupt(moto_aws, tmp_path, monkeypatch):
    from provisioner.engine import engine
    from provisioner.cli.main import main

    def interrupted(self):
        raise Interrupted()

    monkeypatch.setattr(engine.Engine, "up", interrupted)
    result = CliRunner().invoke(main, ["up", "--region", "us-east-1", "--state-dir", str(tmp_path), "--yes"])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    assert "Traceback" not in result.output


def test_up_uses_the_state_another_run_saved_while_it_waited_for_the_lock(moto_aws, tmp_path, monkeypatch):
    """Run B reads the state, run A finishes and saves, then B takes the lock: B must build on
    A's state (keep everything), not on what it read before."""
    from provisioner.commands import runner
    from provisioner.cli.main import main

    state_dir = str(tmp_path / "state")
    args = ["up", "--region", "us-east-1", "--state-dir", state_dir, "--yes"]
    original_lock = runner.Run.lock

    generations = []

    def lock_after_another_run(self):
        # What another run does between this run's first read and its lock.
        monkeypatch.setattr(runner.Run, "lock", original_lock)
        assert CliRunner().invoke(main, args).exit_code == 0
        generations.append(StateFile(state_dir, "stylesphere").read().generation)
        return original_lock(self)

    monkeypatch.setattr(runner.Run, "lock", lock_after_another_run)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "37 kept" in result.output
    assert all(n == 1 for n in count_tagged("stylesphere").values())
    # The stack's generation (part of its idempotency tokens) is the one the other run created.
    assert StateFile(state_dir, "stylesphere").read().generation == generations[0]
