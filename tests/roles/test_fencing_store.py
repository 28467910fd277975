"""The fence's decision when the API answers but its store does not: no fence, and how long it lasted."""

from __future__ import annotations

from corral.roles.fencing import Fence


async def no_kill() -> int:
    raise AssertionError("nothing may be killed")


def test_beats_answered_store_unavailable_count_as_contact_and_the_fence_stays_down() -> None:
    now = [100.0]
    fence = Fence(fence_after=4.0, kill_all=no_kill, clock=lambda: now[0])
    for t in (102.0, 104.0, 106.0, 108.0, 110.0):  # 10 s of "store unavailable" answers, 2 s apart
        now[0] = t
        fence.store_unavailable(t)
        assert not fence.due()
    now[0] = 112.0
    assert fence.store_back() == 10.0  # since the first such answer
    assert fence.store_back() is None  # said once


def test_a_node_cut_off_from_the_api_still_fences() -> None:
    now = [100.0]
    fence = Fence(fence_after=4.0, kill_all=no_kill, clock=lambda: now[0])
    fence.store_unavailable(101.0)
    now[0] = 105.5  # then nothing at all answers
    assert fence.due()
