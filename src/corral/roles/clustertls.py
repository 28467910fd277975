"""The control plane's certificates: one cluster CA shared through etcd, and this instance's own.

Several control instances on one etcd must trust and sign with one CA, so the CA (certificate and
key, PEM) lives in etcd under ``CA_KEY``; the first instance creates it with a create-if-absent
transaction and every later one loads it (and the loser of a race loads the winner's). A copy is
written to ``<data-dir>/tls/ca.crt`` and ``ca.key`` (0600) for the CLI and for operators. The CA key
in etcd is readable by whoever can read etcd — which is why the embedded etcd takes client
certificates only and an external one should be given TLS (``--etcd-cafile`` …).

A user's own CA (``--tls-ca-cert``/``--tls-ca-key``) is recorded the same way; if etcd already
holds a different CA the instance refuses to start. A user's own serving certificate
(``--tls-cert``/``--tls-key``) must be signed by the cluster CA, since that CA is what clients pin.

The embedded etcd needs its certificates before etcd can be read, so with an embedded etcd the CA
is settled on disk first (``embedded_etcd_tls``: the user's, or the one in ``<data-dir>/tls``, or
a new one), etcd gets a serving certificate for 127.0.0.1 and the control plane a client
certificate (CN ``corral:etcd-client``), and that same CA is then the one recorded in etcd.

Per start, each instance issues itself a serving certificate for its addresses (127.0.0.1, ::1,
localhost, the host name, the listen address, ``--tls-san``) and the client certificate the API
presents to agents (CN ``corral:api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from corral.model.errors import AlreadyExists, Invalid
from corral.store.base import Store
from corral.store.embedded import EtcdServerTls
from corral.tls import pki
from corral.tls.contexts import client_context, server_context

log = logging.getLogger(__name__)

CA_KEY = "/corral/_cluster/ca"


class CaRecord(msgspec.Struct):
    cert: str
    key: str


@dataclass
class TlsOptions:
    """What the operator asked for (serve flags)."""

    sans: list[str] = field(default_factory=list)  # --tls-san: extra names and IPs of the API
    ca_cert: Path | None = None  # --tls-ca-cert / --tls-ca-key: the user's CA
    ca_key: Path | None = None
    cert: Path | None = None  # --tls-cert / --tls-key: the user's serving certificate (signed by the CA)
    key: Path | None = None


@dataclass(frozen=True)
class ControlTls:
    authority: pki.Authority
    dir: Path
    server: ssl.SSLContext  # the API's listener (client certificates optional)
    agent_client: ssl.SSLContext  # the API calling agents: presents corral:api, trusts only the CA

    @property
    def ca_pem(self) -> bytes:
        return self.authority.cert_pem

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def serving_names(host: str, extra: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IPs) for the API's serving certificate."""
    names = ["localhost", socket.gethostname(), *extra]
    ips = ["127.0.0.1", "::1"]
    if host and host not in ("0.0.0.0", "::"):
        names.append(host)
    else:  # listening everywhere: every address the host name resolves to
        with contextlib.suppress(OSError):
            ips += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)]
    dns = tuple(n for n in names if n and not _is_ip(n))
    return dns, tuple(dict.fromkeys([*ips, *(n for n in names if _is_ip(n))]))


async def _shared_authority(store: Store, opts: TlsOptions) -> pki.Authority:
    own: pki.Authority | None = None
    if opts.ca_cert is not None or opts.ca_key is not None:
        if opts.ca_cert is None or opts.ca_key is None:
            raise Invalid("--tls-ca-cert and --tls-ca-key go together")
        own = pki.Authority.from_pem(await asyncio.to_thread(opts.ca_cert.read_bytes),
                                     await asyncio.to_thread(opts.ca_key.read_bytes))
    kv = await store.get(CA_KEY)
    if kv is None:
        fresh = own if own is not None else await asyncio.to_thread(pki.Authority.generate)
        record = CaRecord(cert=fresh.cert_pem.decode(), key=fresh.key_pem.decode())
        try:
            await store.create(CA_KEY, msgspec.json.encode(record))
            log.info("cluster CA %s recorded in etcd", "given by --tls-ca-cert" if own else "created")
            return fresh
        except AlreadyExists:
            kv = await store.get(CA_KEY)
            assert kv is not None, "the cluster CA is never deleted"
    record = msgspec.json.decode(kv.value, type=CaRecord)
    shared = pki.Authority.from_pem(record.cert.encode(), record.key.encode())
    if own is not None and own.cert_pem != shared.cert_pem:
        raise Invalid(f"--tls-ca-cert {opts.ca_cert} is not the CA this cluster already uses (recorded in etcd); "
                      "every control instance must share one CA")
    return shared


def _write_files(tls_dir: Path, authority: pki.Authority, host: str, opts: TlsOptions) -> tuple[Path, Path]:
    """The CA copy, this instance's serving and API-client certificates; the serving pair's paths."""
    pki.write_private(tls_dir / "ca.crt", authority.cert_pem, mode=0o644)
    pki.write_private(tls_dir / "ca.key", authority.key_pem)
    if opts.cert is not None or opts.key is not None:
        if opts.cert is None or opts.key is None:
            raise Invalid("--tls-cert and --tls-key go together")
        if not authority.signed_this(pki.load_cert(opts.cert.read_bytes())):
            raise Invalid(f"--tls-cert {opts.cert} is not signed by the cluster CA ({tls_dir / 'ca.crt'}); "
                          "clients pin that CA, so they would refuse it")
        cert_file, key_file = opts.cert, opts.key
    else:
        dns, ips = serving_names(host, opts.sans)
        cert, key = authority.issue_pair(cn="corral:apiserver", server=True, dns=dns, ips=ips)
        cert_file, key_file = tls_dir / "server.crt", tls_dir / "server.key"
        pki.write_private(key_file, key)
        pki.write_private(cert_file, cert, mode=0o644)
    cert, key = authority.issue_pair(cn=pki.API_CLIENT_CN, client=True)
    pki.write_private(tls_dir / "api-client.key", key)
    pki.write_private(tls_dir / "api-client.crt", cert, mode=0o644)
    return cert_file, key_file


def embedded_etcd_tls(data_dir: Path, opts: TlsOptions) -> tuple[EtcdServerTls, TlsOptions]:
    """Certificates for an embedded etcd, and the options that make the cluster CA the one that
    signed them (blocking: run it in a thread)."""
    tls_dir = data_dir / "tls"
    if opts.ca_cert is not None and opts.ca_key is not None:
        authority = pki.Authority.from_pem(opts.ca_cert.read_bytes(), opts.ca_key.read_bytes())
    elif (tls_dir / "ca.crt").exists() and (tls_dir / "ca.key").exists():
        authority = pki.Authority.from_pem((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    else:
        authority = pki.Authority.generate()
        pki.write_private(tls_dir / "ca.crt", authority.cert_pem, mode=0o644)
        pki.write_private(tls_dir / "ca.key", authority.key_pem)
    etcd_dir = tls_dir / "etcd"
    files = EtcdServerTls(ca_file=etcd_dir / "ca.crt", cert_file=etcd_dir / "server.crt",
                          key_file=etcd_dir / "server.key", client_cert_file=etcd_dir / "client.crt",
                          client_key_file=etcd_dir / "client.key")
    pki.write_private(files.ca_file, authority.cert_pem, mode=0o644)
    cert, key = authority.issue_pair(cn="corral:etcd", server=True, dns=("localhost",), ips=("127.0.0.1",))
    pki.write_private(files.key_file, key)
    pki.write_private(files.cert_file, cert)
    cert, key = authority.issue_pair(cn="corral:etcd-client", client=True)
    pki.write_private(files.client_key_file, key)
    pki.write_private(files.client_cert_file, cert)
    if opts.ca_cert is None:
        opts = TlsOptions(sans=opts.sans, ca_cert=tls_dir / "ca.crt", ca_key=tls_dir / "ca.key", cert=opts.cert,
                          key=opts.key)
    return files, opts


async def ensure_control_tls(store: Store, data_dir: Path, *, host: str, opts: TlsOptions) -> ControlTls:
    authority = await _shared_authority(store, opts)
    tls_dir = data_dir / "tls"
    cert_file, key_file = await asyncio.to_thread(_write_files, tls_dir, authority, host, opts)
    server = server_context(cert_file, key_file, ca_pem=authority.cert_pem, client_certs="optional")
    agent_client = client_context(authority.cert_pem, cert_file=tls_dir / "api-client.crt",
                                  key_file=tls_dir / "api-client.key")
    return ControlTls(authority=authority, dir=tls_dir, server=server, agent_client=agent_client)
