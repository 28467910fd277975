"""What ``corral run --wait`` shows of a container's statuses (worked out from objects, no server):
bars while ``status.pull`` is there, filled when it goes, one line per new state, the end at Running
or Failed."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from corral.cli.pullprogress import PullDisplay
from corral.cli.runwait import _Follower
from corral.model.resources import Container, ContainerStatus, ObjectMeta, PullLayer, PullStatus


def _ctr(phase: str = "Pending", *, pull: PullStatus | None = None, reason: str = "") -> Container:
    return Container(metadata=ObjectMeta(name="web"),
                     status=ContainerStatus(phase=phase, node="n1", reason=reason, pull=pull))  # type: ignore[arg-type]


def _pull(done: int) -> PullStatus:
    return PullStatus(image="reg/app:1", layers=[PullLayer(digest="sha256:" + "ab" * 32, size=2048, done=done)],
                      bytes_done=done, bytes_total=2048)


def test_the_pull_draws_a_bar_that_fills_when_the_pull_ends_then_running_ends_the_wait() -> None:
    out = io.StringIO()
    display = PullDisplay(enabled=True, console=Console(file=out, force_terminal=True, width=100))
    follower = _Follower(display)
    with display:
        assert follower.see(_ctr()) is None
        assert follower.see(_ctr(pull=_pull(512))) is None
        assert follower.see(_ctr(pull=_pull(1024))) is None
        assert follower.see(_ctr("Running")) is True
    shown = out.getvalue()
    assert "pulling reg/app:1 on n1" in shown and "abababababab" in shown
    assert "2.0/2.0 kB" in shown  # filled once the status no longer has the pull
    assert shown.count('waiting for container "web": Pending') == 1 and 'container "web" is Running' in shown


def test_a_failed_container_ends_the_wait_as_a_failure_and_off_a_terminal_only_lines_are_printed(
        capsys: pytest.CaptureFixture[str]) -> None:
    follower = _Follower(PullDisplay(enabled=False))
    assert follower.see(_ctr(pull=_pull(10))) is None
    assert follower.see(_ctr("Failed", reason="StartFailed")) is False
    assert capsys.readouterr().out == "pulling reg/app:1 on n1\n"  # no bars; the failure is the caller's to say
