"""Children that die with their parent, leftovers ended before a new start, and restarts with back-off."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

from corral.aiokit.backoff import Backoff
from corral.aiokit.processes import RESTARTS, ChildProcess, Supervisor, find_leftovers, is_ours, terminate
from corral.store.embedded import EmbeddedEtcd
from tests.fixtures.cluster import eventually


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_long_run() -> None:
    b = Backoff(initial=0.5, maximum=3.0, reset_after=10.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.ran_for(2.0)
    assert b.next() == 3.0
    b.ran_for(10.0)
    assert b.next() == 0.5


async def test_a_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path) -> None:
    # a parent python that starts a ChildProcess (sleep) and prints its pid, then waits to be killed
    script = textwrap.dedent(f"""
        import asyncio
        from corral.aiokit.processes import ChildProcess
        async def main():
            child = ChildProcess(["sleep", "300"], name="sleep", pid_file=__import__("pathlib").Path({str(tmp_path / "s.pid")!r}))
            await child.start()
            print(child.pid, flush=True)
            await asyncio.sleep(300)
        asyncio.run(main())
    """)
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    assert parent.stdout is not None
    pid = int((await asyncio.wait_for(parent.stdout.readline(), 30)).decode())
    assert alive(pid) and (tmp_path / "s.pid").read_text().strip() == str(pid)
    parent.send_signal(signal.SIGKILL)
    await parent.wait()

    async def child_gone() -> None:
        assert not alive(pid)

    await eventually(child_gone, timeout=10, what="the child dies with its parent")


async def test_terminate_kills_a_child_that_ignores_sigterm_after_the_grace() -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c",
                                                "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                                "print(1, flush=True); time.sleep(60)", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    await proc.stdout.readline()
    assert await terminate(proc, grace=0.3) == -signal.SIGKILL


async def test_a_leftover_etcd_on_the_same_data_dir_is_ended_before_a_new_one_starts(tmp_path: Path) -> None:
    first = EmbeddedEtcd(data_dir=tmp_path / "etcd")
    await first.start()
    old = first.pid
    assert old is not None
    assert find_leftovers(pid_file=first.pid_file, program="etcd", marker=str(tmp_path / "etcd")) == [old]
    assert not is_ours(old, program="etcd", marker=str(tmp_path / "etc"))  # the data dir must match exactly
    second = EmbeddedEtcd(data_dir=tmp_path / "etcd")  # as a new `serve` would, knowing nothing of the first
    try:
        await asyncio.wait_for(second.start(), 30)
        assert second.pid != old and not alive(old)
    finally:
        await second.stop()
        await first.kill()


async def test_a_supervised_child_that_exits_is_restarted_and_counted_until_stop(tmp_path: Path) -> None:
    child = ChildProcess(["sleep", "0.1"], name="blink")
    await child.start()
    stop = asyncio.Event()
    restarted: list[int | None] = []
    keeper = Supervisor("blink", child, stop=stop, backoff=Backoff(initial=0.05, maximum=0.1),
                        on_restart=lambda: restarted.append(child.pid))
    before = RESTARTS["blink"]
    run = asyncio.create_task(keeper.run())

    async def twice() -> None:
        assert keeper.restarts >= 2

    await eventually(twice, timeout=10, what="two restarts")
    stop.set()
    await asyncio.wait_for(run, 5)
    assert RESTARTS["blink"] - before == keeper.restarts
    assert len(set(restarted)) == len(restarted) and os.getpid() not in restarted
    await child.stop()
