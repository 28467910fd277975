"""Containers on the node's network: attach, detach, and the agent's reconcile helpers ensure/remove.

``Network(config)`` is the one object the agent holds. Its state is on disk, never only in memory,
so a restarted agent picks up where the last one stopped:

- ``<data_dir>/network/<container id>.json`` — one record per container: the conflist and port
  mappings used for its ADD, the namespace path, and the CNI result. The record is written *before*
  ADD with ``result: null`` (an intent) and rewritten with the result after, both by atomic rename. A
  crash in between leaves a pending record, so the next ``ensure`` or ``remove`` runs DEL first and
  nothing — an IP, a veth, an iptables chain — is left behind unaccounted for.
- the namespaces ``/var/run/netns/<prefix><container id>`` (``corral.network.netns``);
- host-local's allocation files under ``<data_dir>/ipam/<network name>/`` (``ipam_holders``).

``ensure(id, ports)`` = namespace + loopback + CNI ADD unless a complete record with the same port
mappings exists and its namespace is still live; ``remove(id)`` = CNI DEL (with the saved conflist and
result, or the current config when there is no record) + namespace delete + record removal. Both are
idempotent and safe to repeat after a crash; ``remove`` works for any id the three listings report,
which is how the agent cleans up orphans.

DEL of ``lo`` is skipped: the loopback plugin's DEL only sets ``lo`` down, and ``lo`` goes with the
namespace. When the namespace is gone before DEL (a host reboot, or someone deleting it), the bridge
plugin cannot learn the container's addresses and so leaves its masquerade chain; ``remove`` then
tears that chain down itself from the saved result (``corral.network.masq``).

Calls for one container id are serialised by a per-id lock; different ids run concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corral.network import cni, masq, netns
from corral.network.config import Attachment, NetworkConfig, PortMapping

_RECORD_VERSION = 1


class Network:
    """The node's container network (see the module docstring)."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # --- the reconcile helpers -------------------------------------------------------------------

    async def ensure(self, container_id: str, port_mappings: Sequence[PortMapping] = ()) -> Attachment:
        """Make the container's namespace exist and be attached with these port mappings; return where."""
        name = netns.netns_name(container_id, prefix=self.config.netns_prefix)
        async with self._lock(container_id):
            record = await self._read(container_id)
            live = await netns.exists(name)
            path = str(netns.netns_path(name))
            if record is not None and record["result"] is not None and live and record["netns"] == path:
                current = _mappings(record)
                if current == tuple(port_mappings):
                    return _attachment(record)
            if record is not None or live:
                await self._detach_locked(container_id, record, netns_live=live)
            await netns.create(name)
            return await self._attach_locked(container_id, path, tuple(port_mappings))

    async def remove(self, container_id: str) -> None:
        """Detach the container (DEL, IP released, port chains gone), delete its namespace and record."""
        name = netns.netns_name(container_id, prefix=self.config.netns_prefix)
        async with self._lock(container_id):
            record = await self._read(container_id)
            await self._detach_locked(container_id, record, netns_live=await netns.exists(name))
            await netns.delete(name)

    # --- attach and detach a namespace the caller owns ------------------------------------------

    async def attach(self, container_id: str, netns_path: str, port_mappings: Sequence[PortMapping] = ()) -> Attachment:
        """CNI ADD for a namespace at ``netns_path``; a no-op returning the saved result if already done."""
        async with self._lock(container_id):
            record = await self._read(container_id)
            if record is not None:
                done = record["result"] is not None and record["netns"] == netns_path
                if done and _mappings(record) == tuple(port_mappings):
                    return _attachment(record)
                live = await asyncio.to_thread(os.path.exists, record["netns"])
                await self._detach_locked(container_id, record, netns_live=live)
            return await self._attach_locked(container_id, netns_path, tuple(port_mappings))

    async def detach(self, container_id: str, netns_path: str | None = None) -> None:
        """CNI DEL with the saved record (or the current config), then remove the record. Idempotent."""
        async with self._lock(container_id):
            record = await self._read(container_id)
            path = netns_path or (record["netns"] if record else "")
            live = bool(path) and await asyncio.to_thread(os.path.exists, path)
            if record is not None and path:
                record = {**record, "netns": path}
            await self._detach_locked(container_id, record, netns_live=live, netns_path=path)

    # --- reading the state back -------------------------------------------------------------------

    async def attachment(self, container_id: str) -> Attachment | None:
        """The saved attachment of a container, or ``None`` (never attached, or an ADD that did not finish)."""
        record = await self._read(container_id)
        if record is None or record["result"] is None:
            return None
        return _attachment(record)

    async def list_attached(self) -> list[str]:
        """Container ids with a record on disk (complete or pending), sorted."""
        return await asyncio.to_thread(_list_records, self.config.state_dir)

    async def list_netns(self) -> list[str]:
        """Container ids that have a namespace with this network's prefix, sorted."""
        prefix = self.config.netns_prefix
        return [n[len(prefix) :] for n in await netns.list_names(prefix)]

    async def ipam_holders(self) -> dict[str, str]:
        """host-local's allocations for this network: IP → container id."""
        return await asyncio.to_thread(_ipam_holders, self.config.ipam_dir / self.config.name)

    def netns_path(self, container_id: str) -> Path:
        """The namespace path to give runc for this container (the one ``ensure`` creates)."""
        return netns.netns_path(netns.netns_name(container_id, prefix=self.config.netns_prefix))

    # --- internals ---------------------------------------------------------------------------------

    def _lock(self, container_id: str) -> asyncio.Lock:
        lock = self._locks.get(container_id)
        if lock is None:
            lock = self._locks[container_id] = asyncio.Lock()
        return lock

    async def _attach_locked(
        self, container_id: str, netns_path: str, port_mappings: tuple[PortMapping, ...]
    ) -> Attachment:
        cfg = self.config
        record: dict[str, Any] = {
            "version": _RECORD_VERSION,
            "containerId": container_id,
            "netns": netns_path,
            "ifname": cfg.ifname,
            "portMappings": [p.to_cni() for p in port_mappings],
            "conflist": cfg.conflist(portmap=bool(port_mappings)),
            "result": None,
        }
        await self._write(container_id, record)  # the intent: a crash from here on is undone by DEL
        inv = self._invocation(container_id, netns_path, record)
        try:
            await cni.add_chain(
                cfg.loopback_conflist(), cni.Invocation(container_id, netns_path, "lo"), plugin_dirs=cfg.plugin_dirs
            )
            record["result"] = await cni.add_chain(record["conflist"], inv, plugin_dirs=cfg.plugin_dirs)
            attachment = _attachment(record)
        except BaseException:
            # Undo what part of the chain did (an IP, a veth, chains); keep the record if even that fails.
            with contextlib.suppress(Exception):
                await self._detach_locked(container_id, record, netns_live=True)
            raise
        await self._write(container_id, record)
        return attachment

    async def _detach_locked(
        self,
        container_id: str,
        record: dict[str, Any] | None,
        *,
        netns_live: bool,
        netns_path: str | None = None,
    ) -> None:
        cfg = self.config
        conflist = record["conflist"] if record else cfg.conflist()
        path = netns_path if netns_path is not None else (record["netns"] if record else "")
        if not path:
            path = str(self.netns_path(container_id))
        inv = self._invocation(container_id, path if netns_live else "", record)
        result = record["result"] if record else None
        await cni.del_chain(conflist, inv, prev_result=result, plugin_dirs=cfg.plugin_dirs)
        if not netns_live and result is not None:
            await masq.teardown(network_name=conflist["name"], container_id=container_id, result=result)
        await asyncio.to_thread(_unlink, cfg.state_dir / f"{container_id}.json")

    def _invocation(self, container_id: str, netns_path: str, record: dict[str, Any] | None) -> cni.Invocation:
        mappings = record["portMappings"] if record else []
        ifname = record["ifname"] if record else self.config.ifname
        return cni.Invocation(container_id, netns_path, ifname, {"portMappings": mappings})

    async def _read(self, container_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(_read_record, self.config.state_dir / f"{container_id}.json")

    async def _write(self, container_id: str, record: dict[str, Any]) -> None:
        await asyncio.to_thread(_write_record, self.config.state_dir / f"{container_id}.json", record)


def _mappings(record: dict[str, Any]) -> tuple[PortMapping, ...]:
    return tuple(PortMapping.from_cni(m) for m in record["portMappings"])


def _attachment(record: dict[str, Any]) -> Attachment:
    return Attachment.from_result(
        record["result"], container_id=record["containerId"], netns=record["netns"], port_mappings=_mappings(record)
    )


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a torn write cannot happen (rename), but a hand-edited file must not wedge the agent
    return data if isinstance(data, dict) and data.get("version") == _RECORD_VERSION else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _list_records(state_dir: Path) -> list[str]:
    try:
        names = os.listdir(state_dir)
    except FileNotFoundError:
        return []
    return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith("."))


def _ipam_holders(network_dir: Path) -> dict[str, str]:
    """host-local writes one file per allocated IP, named by the IP, holding ``<id>\\r\\n<ifname>``."""
    holders: dict[str, str] = {}
    try:
        entries = os.listdir(network_dir)
    except FileNotFoundError:
        return holders
    for entry in entries:
        if entry.count(".") != 3 or entry.startswith("last_reserved_ip"):
            continue
        try:
            text = (network_dir / entry).read_text()
        except OSError:
            continue
        holders[entry] = text.splitlines()[0].strip() if text else ""
    return holders
