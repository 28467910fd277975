"""Embedded etcd HA, the k3s way: every control instance's embedded etcd is a member of one cluster.

- ``serve --role=control --cluster-init`` (or no flag: the same) starts the first member: a new
  one-member etcd cluster whose certificates come from the cluster CA on disk.
- ``serve --role=control --join https://FIRST:6443 --join-token K10…`` on an instance without etcd
  data: the CA is downloaded and checked against the token's hash (``tls/tokens.py``, as a worker
  does), then ``POST /control/members`` (api/members.py) asks the existing control plane to add
  this member through etcd's ``MemberAdd`` and to issue its certificates; the answer carries the
  ``--initial-cluster`` string, and etcd starts with ``--initial-cluster-state existing``. The CA's
  key is not sent: the instance loads it from etcd afterwards, as every control instance does.
- Restarts: with etcd data in ``<data-dir>/etcd`` the member just starts again (``--join`` is then
  ignored; etcd knows its cluster). Its name and ports live in ``<data-dir>/etcd-member.json`` so
  its peer URL, recorded in the member list, stays true. If the list holds another peer URL for it
  (an older one-member data dir that spoke plain HTTP to peers), it is corrected with ``MemberUpdate``.
- ``--leave`` on a clean stop removes this member with ``MemberRemove`` and moves its data dir aside
  to ``<data-dir>/etcd.removed`` (a removed member cannot start on it again; ``--join`` can).

The control plane then talks to every member: the client URLs of the member list, this instance's
first (``EtcdStore`` fails over between them), recorded in ``<data-dir>/etcd.endpoints``, and
followed every 10 s as members join and leave (``follow_members``; ``EtcdStore.retarget``). The
leader child process keeps the list it was started with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import msgspec

from corral.api.client import ApiClient
from corral.model.errors import CorralError, Invalid, Unavailable
from corral.roles.clustertls import TlsOptions, embedded_etcd_tls
from corral.store import members
from corral.store.embedded import EmbeddedEtcd, EtcdServerTls, free_port
from corral.store.etcd import EtcdStore
from corral.tls import pki
from corral.tls.contexts import client_context
from corral.tls.tokens import JoinToken, fetch_pinned_ca

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 60.0  # a joining member catches up with the cluster before it reports healthy
# writes through an embedded member fail after this long instead of etcd's 7 s when the raft leader
# is lost (EtcdStore's write_timeout): the API's group-commit slots free up soon after an election
MEMBER_WRITE_TIMEOUT = 2.0
LEAVE_TIMEOUT = 15.0
SETTLE_TIMEOUT = 30.0  # a member just started answers its first TLS calls within this
RECONFIG_NOT_YET = ("unhealthy cluster", "not enough started members")


class MemberState(msgspec.Struct, rename="camel"):
    name: str
    client_port: int
    peer_port: int
    joined: bool = False  # its certificates came from POST /control/members


@dataclass
class EmbeddedMember:
    etcd: EmbeddedEtcd
    endpoints: list[str]  # every member's client URL, this one's first
    tls_opts: TlsOptions


def _state_path(data_dir: Path) -> Path:
    return data_dir / "etcd-member.json"


def _load_state(data_dir: Path, host: str) -> MemberState:
    path = _state_path(data_dir)
    if path.exists():
        return msgspec.json.decode(path.read_bytes(), type=MemberState)
    has_data = (data_dir / "etcd" / "member").exists()
    name = "corral" if has_data else f"{socket.gethostname()}-{secrets.token_hex(3)}"  # an older data dir: its name
    state = MemberState(name=name, client_port=free_port(host), peer_port=free_port(host))
    _save_state(data_dir, state)
    return state


def _save_state(data_dir: Path, state: MemberState) -> None:
    pki.write_private(_state_path(data_dir), msgspec.json.encode(state) + b"\n", mode=0o644)


def _etcd_files(tls_dir: Path) -> EtcdServerTls:
    d = tls_dir / "etcd"
    return EtcdServerTls(ca_file=d / "ca.crt", cert_file=d / "server.crt", key_file=d / "server.key",
                         client_cert_file=d / "client.crt", client_key_file=d / "client.key")


def _save_joined(tls_dir: Path, answer: dict[str, str]) -> EtcdServerTls:
    files = _etcd_files(tls_dir)
    pki.write_private(tls_dir / "ca.crt", answer["ca"].encode(), mode=0o644)
    pki.write_private(files.ca_file, answer["ca"].encode(), mode=0o644)
    pki.write_private(files.key_file, answer["key"].encode())
    pki.write_private(files.cert_file, answer["cert"].encode())
    pki.write_private(files.client_key_file, answer["clientKey"].encode())
    pki.write_private(files.client_cert_file, answer["clientCert"].encode())
    return files


async def _ask_to_join(join_url: str, join_token: str, *, name: str, peer_url: str, client_url: str
                       ) -> dict[str, str]:
    if not join_token:
        raise Invalid("--join needs --join-token K10… (the cluster's join token, from <data-dir>/join.token on "
                      "a control host)")
    token = JoinToken.parse(join_token)
    ca_pem = await fetch_pinned_ca([join_url], token)
    deadline = asyncio.get_running_loop().time() + JOIN_TIMEOUT
    async with ApiClient(join_url, token.secret, ssl_context=client_context(ca_pem),
                         trust_source="the CA the join token pins") as client:
        while True:
            try:
                body = await client.request("POST", "/control/members",
                                            body={"name": name, "peerURL": peer_url, "clientURL": client_url})
                break
            except Unavailable as e:
                # etcd adds a voting member only when its leader has reached every member for 5 s
                # (--strict-reconfig-check): a member that joined a moment ago makes it wait
                if not any(s in str(e) for s in RECONFIG_NOT_YET) or asyncio.get_running_loop().time() > deadline:
                    raise
                log.info("etcd cannot add a member yet (%s); trying again", e)
                await asyncio.sleep(1.0)
    answer: dict[str, str] = msgspec.json.decode(body)
    return answer


def advertise_host(listen_host: str) -> str:
    """Where the other members reach this one: the API's listen address, or loopback for a wildcard."""
    return "127.0.0.1" if listen_host in ("", "0.0.0.0", "::") else listen_host


async def start_embedded(data_dir: Path, *, host: str, tls_opts: TlsOptions, join_url: str = "",
                         join_token: str = "") -> EmbeddedMember:
    """Start this instance's member (joining the cluster at ``join_url`` on its first start)."""
    state = await asyncio.to_thread(_load_state, data_dir, host)
    has_data = (data_dir / "etcd" / "member").exists()
    etcd = EmbeddedEtcd(data_dir=data_dir / "etcd", log_path=data_dir / "etcd.log", host=host,
                        client_port=state.client_port, peer_port=state.peer_port, name=state.name)
    tls_dir = data_dir / "tls"
    timeout = 20.0
    if join_url and not has_data:
        etcd.tls = _etcd_files(tls_dir)  # for its URLs' scheme
        log.info("joining the etcd cluster of %s as member %s (peer %s)", join_url, state.name, etcd.peer_url)
        answer = await _ask_to_join(join_url, join_token, name=state.name, peer_url=etcd.peer_url,
                                    client_url=etcd.endpoint)
        etcd.tls = await asyncio.to_thread(_save_joined, tls_dir, answer)
        etcd.initial_cluster, etcd.cluster_state = answer["initialCluster"], "existing"
        state.joined = True
        await asyncio.to_thread(_save_state, data_dir, state)
        timeout = JOIN_TIMEOUT
    else:
        if join_url:
            log.info("--join %s ignored: this instance's etcd is a member already (data in %s)", join_url, etcd.data_dir)
        if state.joined and not (tls_dir / "ca.key").exists():  # joined, stopped before it loaded the CA
            etcd.tls = _etcd_files(tls_dir)
        else:
            etcd.tls, tls_opts = await asyncio.to_thread(embedded_etcd_tls, data_dir, tls_opts, ips=(host,))
    try:
        await etcd.start(timeout=timeout)
    except CorralError:
        if state.joined and not has_data:
            log.error("etcd member %s was added to the cluster but did not start; remove it with "
                      "`corral control members remove %s` before trying again", state.name, state.name)
        raise
    endpoints = await _settle(etcd)
    return EmbeddedMember(etcd=etcd, endpoints=endpoints, tls_opts=tls_opts)


async def _settle(etcd: EmbeddedEtcd) -> list[str]:
    """Correct this member's peer URL in the list if it changed; every member's client URL. A member
    that has just started may not take a TLS connection yet on a loaded machine ("Handshake write
    failed"): that is tried again for ``SETTLE_TIMEOUT``."""
    deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
    while True:
        try:
            return await _settle_once(etcd)
        except Unavailable as e:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info("etcd member %s does not answer yet (%s); trying again", etcd.name, e)
            await asyncio.sleep(0.5)


async def _settle_once(etcd: EmbeddedEtcd) -> list[str]:
    store = EtcdStore([etcd.endpoint], tls=etcd.client_tls())
    try:
        me = await members.local_member_id(store)
        listed = await members.list_members(store)
        mine = next((m for m in listed if m.id == me), None)
        if mine is not None and mine.peer_urls != (etcd.peer_url,):
            log.info("etcd member %s: peer URL %s → %s (MemberUpdate)", etcd.name, ",".join(mine.peer_urls),
                     etcd.peer_url)
            await members.update_member(store, me, etcd.peer_url)
        urls = [u for m in listed for u in m.client_urls[:1]]
        return sorted(dict.fromkeys([etcd.endpoint, *urls]), key=lambda u: u != etcd.endpoint)
    finally:
        await store.close()


async def follow_members(store: EtcdStore, etcd: EmbeddedEtcd, data_dir: Path, *, every: float = 10.0) -> None:
    """Keep the store talking to every member, this one's first, as members join and leave (runs
    until cancelled); ``<data-dir>/etcd.endpoints`` follows."""
    while True:
        await asyncio.sleep(every)
        try:
            listed = await members.list_members(store)
        except CorralError as e:
            log.debug("etcd member list: %s", e)
            continue
        urls = [u for m in listed for u in m.client_urls[:1]]
        endpoints = sorted(dict.fromkeys([etcd.endpoint, *urls]), key=lambda u: u != etcd.endpoint)
        if store.retarget(endpoints):
            log.info("etcd members changed: talking to %s", ",".join(endpoints))
            await asyncio.to_thread((data_dir / "etcd.endpoints").write_text, json.dumps(endpoints) + "\n")


async def leave(store: EtcdStore, member: EmbeddedMember, data_dir: Path) -> None:
    """Remove this instance's member from the cluster (``--leave``) and move its data aside."""
    etcd = member.etcd
    own = EtcdStore([etcd.endpoint], tls=etcd.client_tls())
    try:
        me = await members.local_member_id(own)
    finally:
        await own.close()
    if [m.id for m in await members.list_members(store)] == [me]:
        log.warning("etcd member %s is the cluster's last member: it stays (nothing would be left to leave)",
                    etcd.name)
        return
    deadline = asyncio.get_running_loop().time() + LEAVE_TIMEOUT
    while True:
        try:
            await members.remove_member(store, me)
            break
        except Unavailable as e:  # strict reconfig: etcd wants every other member reached for 5 s first
            if not any(s in str(e) for s in RECONFIG_NOT_YET) or asyncio.get_running_loop().time() > deadline:
                raise
            log.info("etcd cannot remove this member yet (%s); trying again", e)
            await asyncio.sleep(0.5)
    log.info("etcd member %s (%x) left the cluster", etcd.name, me)
    await etcd.stop()
    removed = data_dir / "etcd.removed"
    await asyncio.to_thread(shutil.rmtree, removed, True)
    await asyncio.to_thread((data_dir / "etcd").rename, removed)
    await asyncio.to_thread(_state_path(data_dir).unlink, True)
