"""etcd cluster membership through etcd's Cluster API: list, add, update, remove, and health.

Three control instances each run an embedded etcd, and those three etcds are one etcd cluster
(the k3s way). Membership changes only through etcd's Cluster service (``MemberAdd``,
``MemberRemove``, ``MemberUpdate``, ``MemberList``) on the store's gRPC channel, the stubs coming
from aetcd's ``rpc`` module as everywhere in ``EtcdStore``; etcd's files are never edited.

A joining member is added by a member that is already in the cluster (``add_member``) before it
starts; it then starts with ``--initial-cluster-state existing`` and the ``initial_cluster`` string
made of every member's name and peer URLs (the new one has no name in the list until it starts, so
its name is given). ``member_health`` asks every member's own client URL for its status (a member
that answers within the timeout is healthy, and reports which member leads the raft).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aetcd import rpc

from corral.store.etcd import EtcdStore, EtcdTls
from corral.store.etcd_errors import GRPC_ERRORS, translate


@dataclass(frozen=True)
class Member:
    id: int
    name: str  # empty until the member has started and published its name
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


@dataclass(frozen=True)
class MemberHealth:
    member: Member
    healthy: bool
    leader: bool
    error: str = ""


def _member(m: object) -> Member:
    return Member(id=int(m.ID), name=str(m.name), peer_urls=tuple(m.peerURLs),  # type: ignore[attr-defined]
                  client_urls=tuple(m.clientURLs))  # type: ignore[attr-defined]


def _cluster(store: EtcdStore) -> object:
    return rpc.ClusterStub(store.channel())


async def _call(call: object, what: str) -> object:
    try:
        return await call  # type: ignore[misc]
    except GRPC_ERRORS as e:
        raise translate(e, what=what) from None


async def list_members(store: EtcdStore) -> list[Member]:
    resp = await _call(_cluster(store).MemberList(rpc.MemberListRequest(), timeout=store.timeout),  # type: ignore[attr-defined]
                       "etcd member list")
    return [_member(m) for m in resp.members]  # type: ignore[attr-defined]


async def add_member(store: EtcdStore, peer_url: str) -> tuple[Member, list[Member]]:
    """Add a member with ``peer_url``: the new member and the list after the add."""
    resp = await _call(_cluster(store).MemberAdd(rpc.MemberAddRequest(peerURLs=[peer_url]),  # type: ignore[attr-defined]
                                                 timeout=store.timeout), "etcd member add")
    return _member(resp.member), [_member(m) for m in resp.members]  # type: ignore[attr-defined]


async def update_member(store: EtcdStore, member_id: int, peer_url: str) -> None:
    await _call(_cluster(store).MemberUpdate(rpc.MemberUpdateRequest(ID=member_id, peerURLs=[peer_url]),  # type: ignore[attr-defined]
                                             timeout=store.timeout), "etcd member update")


async def remove_member(store: EtcdStore, member_id: int) -> None:
    await _call(_cluster(store).MemberRemove(rpc.MemberRemoveRequest(ID=member_id),  # type: ignore[attr-defined]
                                             timeout=store.timeout), "etcd member remove")


async def local_member_id(store: EtcdStore) -> int:
    """The ID of the member the store talks to (its first endpoint)."""
    maintenance = rpc.MaintenanceStub(store.channel())
    resp = await _call(maintenance.Status(rpc.StatusRequest(), timeout=store.timeout), "etcd status")
    return int(resp.header.member_id)  # type: ignore[attr-defined]


def initial_cluster(members: Sequence[Member], *, new_id: int, new_name: str) -> str:
    """etcd's ``--initial-cluster``: ``name=peerURL,…`` for every member (the new one by its given name)."""
    parts = []
    for m in members:
        name = new_name if m.id == new_id else m.name
        parts += [f"{name}={url}" for url in m.peer_urls]
    return ",".join(parts)


async def _status(url: str, tls: EtcdTls | None, timeout: float) -> tuple[int, int]:
    """(this member's ID, the leader's ID) from the member at ``url``."""
    one = EtcdStore([url], tls=tls, timeout=timeout)
    try:
        maintenance = rpc.MaintenanceStub(one.channel())
        resp = await _call(maintenance.Status(rpc.StatusRequest(), timeout=timeout), f"etcd status of {url}")
        return int(resp.header.member_id), int(resp.leader)  # type: ignore[attr-defined]
    finally:
        await one.close()


async def member_health(store: EtcdStore, *, timeout: float = 2.0) -> list[MemberHealth]:
    """Every member with whether its own client URL answers and whether it leads."""
    members = await list_members(store)
    leaders: set[int] = set()

    async def probe(m: Member) -> tuple[bool, str]:
        if not m.client_urls:
            return False, "not started (no client URL published yet)"
        try:
            _, leader = await asyncio.wait_for(_status(m.client_urls[0], store.tls, timeout), timeout + 1)
        except Exception as e:
            return False, str(e) or type(e).__name__
        if leader:
            leaders.add(leader)
        return True, ""

    results = await asyncio.gather(*(probe(m) for m in members))
    leader = next(iter(leaders)) if len(leaders) == 1 else 0
    return [MemberHealth(member=m, healthy=ok, leader=m.id == leader and ok, error=err)
            for m, (ok, err) in zip(members, results, strict=True)]

