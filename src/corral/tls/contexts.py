"""``ssl`` contexts for every TLS endpoint in the cluster, made in one place.

- The API serves with ``server_context(..., client_certs="optional")``: a client may present a
  certificate (agents do: their node's), and when it does it must chain to the cluster CA or the
  handshake fails; a client without one authenticates with a bearer token instead.
- An agent's listener serves with ``client_certs="required"``: only holders of a cluster
  certificate get past the handshake, and the listener then checks it is the API's.
- Every client (CLI, agents, the API calling agents) trusts only the cluster CA
  (``client_context``) and checks the server's name or IP against its certificate.

TLS 1.2 is the floor. ``peer_common_name`` reads the verified peer certificate's CN from a
connection (the identity the auth middleware and the agent's listener act on).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

ClientCerts = Literal["none", "optional", "required"]

_VERIFY: dict[ClientCerts, ssl.VerifyMode] = {
    "none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED,
}


def server_context(cert_file: Path, key_file: Path, *, ca_pem: bytes | None = None,
                   client_certs: ClientCerts = "none") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_certs != "none":
        if ca_pem is None:
            raise ValueError("checking client certificates needs the CA")
        ctx.load_verify_locations(cadata=ca_pem.decode())
        ctx.verify_mode = _VERIFY[client_certs]
    return ctx


def client_context(ca_pem: bytes, *, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """Trust only ``ca_pem``; present ``cert_file``/``key_file`` when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem.decode())
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def common_name_of(peercert: Any) -> str:
    """The CN in a certificate as ``SSLObject.getpeercert()`` decodes it (``""`` when none)."""
    if not peercert:
        return ""
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def peer_common_name(transport: Any) -> str:
    """The verified client or server certificate's CN on an asyncio transport, ``""`` without one."""
    if transport is None:
        return ""
    return common_name_of(transport.get_extra_info("peercert"))
