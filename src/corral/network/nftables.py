"""The agent's one nftables table, composed from independent parts and replaced atomically.

Every rule the agent keeps in the kernel's nftables lives in one table (``inet corral`` by default;
tests that run several agents in one network namespace give each its own name). Features own
*parts* of it: network policy, the service proxy, the loopback guard. A part is a block of nft
declarations — sets, maps and chains, base chains with their own hooks included — whose names start
with the part's name, so parts never collide. nftables runs every base chain on a hook, in priority
order, so two parts may both hook ``forward`` without knowing of each other.

``NftTable.apply`` renders the whole table and loads it with one ``nft -f -`` transaction that
creates the table (if absent), deletes it, and declares it again: the kernel swaps the old rules for
the new at once, with no moment in which the table is half written, and a crashed agent's table is
simply replaced by the next one it writes (level-based: nothing is ever appended). Applies are
serialized and coalesced: a change that arrives while one is being loaded is folded into the next.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from corral.model.errors import CorralError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


class NftError(CorralError):
    """nft refused what it was given (the message carries nft's own words)."""


@dataclass(frozen=True, slots=True)
class NftPart:
    """A block of declarations inside the table. ``name`` prefixes every set, map and chain it declares."""

    name: str
    text: str


def render_table(family: str, table: str, parts: list[NftPart]) -> str:
    """The ``nft -f`` script that replaces ``family table`` with exactly ``parts`` (pure)."""
    lines = [f"table {family} {table} {{}}", f"delete table {family} {table}", f"table {family} {table} {{"]
    for part in sorted(parts, key=lambda p: p.name):
        lines.append(f"\t# part: {part.name}")
        lines.extend("\t" + line if line.strip() else "" for line in part.text.strip("\n").splitlines())
    lines.append("}")
    return "\n".join(lines) + "\n"


async def run_nft(script: str, *args: str) -> str:
    """Run ``nft [args] -f -`` with ``script`` on stdin; nft's output, or NftError with its message."""
    proc = await asyncio.create_subprocess_exec(
        "nft", *args, "-f", "-", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise NftError(f"nft failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def nft_command(*args: str) -> tuple[int, str]:
    """Run ``nft ARGS`` and return (exit code, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "nft", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


class NftTable:
    """One nftables table, kept equal to the union of its parts."""

    def __init__(self, table: str = "corral", *, family: str = "inet") -> None:
        if not _NAME.match(table):
            raise ValueError(f"nftables table name {table!r}: use lower-case letters, digits, '-' and '_'")
        self.family = family
        self.table = table
        self._parts: dict[str, NftPart] = {}
        self._lock = asyncio.Lock()
        self._dirty = False
        self._applied: str | None = None
        self._awaited: set[str] = set()  # parts announced by ``await_part`` and not set yet
        self.applies = 0  # how many nft transactions were loaded (tests and benchmarks read it)

    def await_part(self, name: str) -> None:
        """Announce that part ``name`` will be set: until it is, ``apply`` loads nothing. A restarted
        agent then never replaces the table its last run left in the kernel with one that lacks a part
        still being worked out (the network policy rules while its watches sync: that would open, for
        a moment, what the policies close)."""
        self._awaited.add(name)

    def set_part(self, part: NftPart) -> bool:
        """Put ``part`` in the table (replacing its earlier version); True if anything changed.
        Nothing reaches the kernel before ``apply``."""
        if not _NAME.match(part.name):
            raise ValueError(f"nftables part name {part.name!r}: use lower-case letters, digits, '-' and '_'")
        self._awaited.discard(part.name)
        if self._parts.get(part.name) == part:
            return False
        self._parts[part.name] = part
        self._dirty = True
        return True

    def drop_part(self, name: str) -> bool:
        if self._parts.pop(name, None) is None:
            return False
        self._dirty = True
        return True

    def render(self) -> str:
        return render_table(self.family, self.table, list(self._parts.values()))

    async def apply(self) -> bool:
        """Load the table if it changed since the last load; True if a transaction was loaded.
        Concurrent callers share one load: whoever waits on the lock finds the work done. While a part
        announced by ``await_part`` is missing nothing is loaded (the change stays pending)."""
        if not self._dirty or self._awaited:
            return False
        async with self._lock:
            if not self._dirty or self._awaited:
                return False
            self._dirty = False
            script = self.render()
            if script == self._applied:
                return False
            try:
                await run_nft(script)
            except BaseException:
                self._dirty = True
                raise
            self._applied = script
            self.applies += 1
            return True

    async def update_part(self, part: NftPart, commands: list[str]) -> bool:
        """Make ``part`` the table's by running ``commands`` (nft commands on this table, e.g. ``add
        element``, ``flush chain``, ``add rule``) in one ``nft -f`` transaction instead of loading the
        whole table: the caller vouches that they turn the loaded version of the part into ``part``
        (``network.policy.delta_commands`` does). The other parts, and the sets the kernel fills
        itself, are left as they are. False, and nothing done, when the table is not loaded as it
        stands (a change pending, or never loaded): then ``set_part`` + ``apply``."""
        async with self._lock:
            if self._dirty or self._awaited or self._applied is None or part.name not in self._parts:
                return False
            if commands:
                await run_nft("\n".join(commands) + "\n")
                self.applies += 1
            self._parts[part.name] = part
            self._applied = self.render()
            return True

    async def update_sets(self, part: NftPart, changes: dict[str, tuple[list[str], list[str]]]) -> bool:
        """``update_part`` for a part that differs only in set elements: ``changes`` maps a set to
        (elements to delete, elements to add)."""
        at = f"{self.family} {self.table}"
        commands = []
        for name, (delete, add) in sorted(changes.items()):
            if delete:
                commands.append(f"delete element {at} {name} {{ {', '.join(delete)} }}")
            if add:
                commands.append(f"add element {at} {name} {{ {', '.join(add)} }}")
        return await self.update_part(part, commands)

    async def remove(self) -> None:
        """Delete the table from the kernel (nothing happens if it is not there)."""
        async with self._lock:
            await nft_command("delete", "table", self.family, self.table)
            self._applied = None
            self._dirty = bool(self._parts)
