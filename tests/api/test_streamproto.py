"""The exec/attach/port-forward channel protocol, without I/O."""

from __future__ import annotations

import pytest

from corral.api import streamproto as sp


def test_a_frame_is_its_channel_byte_then_the_payload_and_splits_back_without_a_copy() -> None:
    message = sp.frame(sp.STDERR, b"oops")
    assert message == b"\x02oops"
    channel, payload = sp.split(message)
    assert channel == sp.STDERR and bytes(payload) == b"oops" and isinstance(payload, memoryview)
    assert sp.close_frame(sp.STDIN) == b"\xff\x00"
    with pytest.raises(ValueError):
        sp.split(b"")


def test_the_status_says_success_or_the_exit_code_and_why() -> None:
    ok = sp.parse_status(sp.status_payload(exit_code=0))
    assert ok.ok and ok.exit_code == 0
    failed = sp.parse_status(sp.status_payload(exit_code=3))
    assert (failed.exit_code, failed.reason) == (3, "NonZeroExitCode") and "exit code 3" in failed.message
    refused = sp.parse_status(sp.status_payload(exit_code=None, reason="StartFailed", message="no such file"))
    assert (refused.exit_code, refused.reason, refused.message) == (None, "StartFailed", "no such file")
    assert sp.parse_status(memoryview(b"not json")).reason == "BadStatus"


def test_a_resize_carries_a_sensible_width_and_height_or_nothing() -> None:
    assert sp.parse_resize(sp.resize_payload(120, 40)) == (120, 40)
    assert sp.parse_resize(b'{"Width": 0, "Height": 10}') is None
    assert sp.parse_resize(b'{"Width": "x"}') is None
    assert sp.parse_resize(b"[") is None
