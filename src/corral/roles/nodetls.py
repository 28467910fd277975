"""A worker's credentials: the cluster CA it pinned and its node certificate.

Kept in ``<agent data dir>/tls/``: ``ca.crt``, ``node.key`` (0600) and ``node.crt`` (CN
``node:<name>``, SANs ``<name>.nodes.corral`` and the node IP; serverAuth + clientAuth). The one
certificate authenticates the agent to the API (mutual TLS: no token) and serves its listener.

- First start: the ``K10<hash>::<secret>`` join token pins the CA; the CA is downloaded from
  ``GET /cacerts`` and must hash to the token's hash (``tls/tokens.py``); the worker makes a key
  and a CSR and ``POST /join``s it with the secret, over TLS that trusts only the pinned CA.
- Later starts: the kept certificate is used while more than a third of its validity is left and
  it still names the node IP; otherwise (while it is valid) it is renewed by the same
  ``POST /join``, authenticated by the current certificate (a node may always re-join as itself). A renewal that fails while the
  old certificate is still valid is logged and the old one kept.
- While the agent runs: ``renew_at`` says when a third of the certificate's validity is left; the
  agent renews it then (``Agent._keep_certificate``: the same ``POST /join``, in a child too) and loads the
  new key and certificate into the TLS contexts it made from these credentials (``reload``), so new
  connections — to the API, and to its own listener — present it; a renewal that fails is tried
  again while the current certificate lasts.

The agent does this in a child process (``node_credentials_in_child``: ``python -m
corral.roles.nodetls``) and only reads the files it leaves: making keys and CSRs and reading
certificates needs cryptography, which would stay in the long-lived agent for nothing (~10 MiB
resident of its memory, most of it the library's Rust extension). The child costs the agent's start
one Python start-up and cryptography's import: 0.13 to 0.2 s measured (load 10) for the usual case,
a kept certificate, which needs no API client; 0.4 to 1.2 s (load 8) when it joins or renews. This
module therefore imports ``pki``, ``tokens`` and the API client inside the functions that use them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec

from corral.model import errors
from corral.model.errors import CorralError, Invalid, Unauthorized
from corral.tls.contexts import client_context, server_context

log = logging.getLogger(__name__)

RENEW_BELOW = 1 / 3  # renew when less than this fraction of the certificate's validity is left


@dataclass(frozen=True)
class NodeCredentials:
    ca_pem: bytes
    cert_file: Path
    key_file: Path
    renew_at: float = 0.0  # unix time when a third of the certificate's validity is left (0: unknown)
    expires_at: float = 0.0  # unix time the certificate expires (0: unknown)

    def api_context(self) -> ssl.SSLContext:
        """Calling the API: trust the cluster CA, present the node certificate."""
        return client_context(self.ca_pem, cert_file=self.cert_file, key_file=self.key_file)

    def listener_context(self) -> ssl.SSLContext:
        """The agent's listener: serve the node certificate, require a cluster client certificate."""
        return server_context(self.cert_file, self.key_file, ca_pem=self.ca_pem, client_certs="required")

    def reload(self, contexts: list[ssl.SSLContext]) -> None:
        """Load the key and certificate on disk now into ``contexts`` (made by ``api_context`` and
        ``listener_context``): connections made from now on present them; open ones keep theirs."""
        for ctx in contexts:
            ctx.load_cert_chain(self.cert_file, self.key_file)


def _lifetime(cert_pem: bytes) -> tuple[float, float]:
    """When less than ``RENEW_BELOW`` of the certificate's validity will be left, and when it expires (unix times)."""
    from corral.tls import pki

    cert = pki.load_cert(cert_pem)
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return end - RENEW_BELOW * (end - start), end


def _read(tls_dir: Path) -> tuple[bytes, bytes] | None:
    paths = [tls_dir / "ca.crt", tls_dir / "node.crt", tls_dir / "node.key"]
    if not all(p.exists() for p in paths):
        return None
    return paths[0].read_bytes(), paths[1].read_bytes()


async def _sign(servers: list[str], ssl_context: ssl.SSLContext, *, token: str, node: str, node_ip: str,
                trust_source: str) -> tuple[bytes, bytes]:
    """A new key, and its certificate from ``POST /join`` (key PEM, certificate PEM)."""
    from corral.api.client import ApiClient
    from corral.tls import pki

    key = pki.new_key()
    csr = pki.make_csr(key, pki.NODE_PREFIX + node)
    async with ApiClient(servers, token, ssl_context=ssl_context, trust_source=trust_source) as client:
        body = await client.request("POST", "/join", body={"node": node, "csr": csr.decode(), "nodeIP": node_ip})
    answer = msgspec.json.decode(body)
    return pki.key_pem(key), str(answer["certificate"]).encode()


def _save(tls_dir: Path, *, ca_pem: bytes | None, key: bytes, cert: bytes) -> None:
    from corral.tls import pki

    if ca_pem is not None:
        pki.write_private(tls_dir / "ca.crt", ca_pem, mode=0o644)
    pki.write_private(tls_dir / "node.key", key)
    pki.write_private(tls_dir / "node.crt", cert)


async def node_credentials(*, servers: list[str], data_dir: Path, node: str, node_ip: str,
                           join_token: str, renew: bool = False) -> NodeCredentials:
    """The node's credentials: kept, renewed (when ageing, for another node IP, or ``renew``) or
    joined for; with ``renew_at`` read from the certificate they leave on disk."""
    creds = await _node_credentials(servers=servers, data_dir=data_dir, node=node, node_ip=node_ip,
                                    join_token=join_token, renew=renew)
    renew_at, expires_at = _lifetime(await asyncio.to_thread(creds.cert_file.read_bytes))
    return NodeCredentials(creds.ca_pem, creds.cert_file, creds.key_file, renew_at=renew_at, expires_at=expires_at)


async def _node_credentials(*, servers: list[str], data_dir: Path, node: str, node_ip: str,
                            join_token: str, renew: bool) -> NodeCredentials:
    from corral.tls import pki

    if plain := [s for s in servers if not s.startswith("https://")]:
        raise Invalid(f"--server {plain[0]}: corral's API speaks HTTPS only; use https://HOST:PORT")
    tls_dir = data_dir / "tls"
    creds = NodeCredentials(b"", tls_dir / "node.crt", tls_dir / "node.key")
    kept = await asyncio.to_thread(_read, tls_dir)
    if kept is not None:
        ca_pem, cert_pem = kept
        creds = NodeCredentials(ca_pem, creds.cert_file, creds.key_file)
        cert = pki.load_cert(cert_pem)
        left = pki.remaining_fraction(cert)
        same = pki.common_name(cert) == pki.NODE_PREFIX + node
        if same and left > RENEW_BELOW and node_ip in pki.ip_sans(cert) and not renew:
            return creds
        if same and left > 0:  # ageing, or for an old node IP: the node proves itself with it
            try:
                key, new = await _sign(servers, creds.api_context(), token="", node=node, node_ip=node_ip,
                                       trust_source=str(tls_dir / "ca.crt"))
            except CorralError as e:
                log.warning("renewing the node certificate failed (%s); the current one is valid %.0f%% longer",
                            e, left * 100)
                return creds
            await asyncio.to_thread(_save, tls_dir, ca_pem=None, key=key, cert=new)
            log.info("renewed the node certificate (%.0f%% of its validity was left)", left * 100)
            return creds
        log.info("the kept node certificate is %s: joining again", "expired" if left <= 0 else "for another name")
    if not join_token:
        raise Unauthorized(f"the worker has no node certificate in {tls_dir} and no --join-token to get one")
    from corral.tls.tokens import JoinToken, fetch_pinned_ca

    token = JoinToken.parse(join_token)
    ca_pem = await fetch_pinned_ca(servers, token)
    key, cert_pem = await _sign(servers, client_context(ca_pem), token=token.secret, node=node, node_ip=node_ip,
                                trust_source="the CA the join token pins")
    await asyncio.to_thread(_save, tls_dir, ca_pem=ca_pem, key=key, cert=cert_pem)
    log.info("joined as node %s; certificate in %s", node, tls_dir)
    return NodeCredentials(ca_pem, creds.cert_file, creds.key_file)


async def node_credentials_in_child(*, servers: list[str], data_dir: Path, node: str, node_ip: str,
                                    join_token: str, renew: bool = False,
                                    in_child: bool | None = None) -> NodeCredentials:
    """``node_credentials`` run by a child Python (which alone loads cryptography); the same errors
    (the child reports the class and message of a ``CorralError``). In a process that has loaded
    cryptography already (``serve --all``: the control plane's CA), in this process, unless ``in_child``."""
    if not (in_child if in_child is not None else "cryptography" not in sys.modules):
        return await node_credentials(servers=servers, data_dir=data_dir, node=node, node_ip=node_ip,
                                      join_token=join_token, renew=renew)
    request = {"servers": servers, "dataDir": str(data_dir), "node": node, "nodeIP": node_ip, "joinToken": join_token,
               "renew": renew}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # finds corral as we did
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, env=env)
    out, _ = await child.communicate(json.dumps(request).encode())
    if child.returncode != 0:
        try:
            answer = json.loads(out)
        except ValueError:
            raise CorralError(f"preparing the node's credentials failed (exit {child.returncode}); "
                              "see the log above") from None
        kind = getattr(errors, str(answer.get("error")), None)
        if not (isinstance(kind, type) and issubclass(kind, CorralError)):
            kind = CorralError
        raise kind(answer["message"])
    tls_dir = data_dir / "tls"
    ca_pem = await asyncio.to_thread((tls_dir / "ca.crt").read_bytes)
    answer = json.loads(out) if out.strip() else {}
    return NodeCredentials(ca_pem, tls_dir / "node.crt", tls_dir / "node.key",
                           renew_at=float(answer.get("renewAt", 0.0)), expires_at=float(answer.get("expiresAt", 0.0)))


def _child() -> int:
    """``python -m corral.roles.nodetls``: a JSON request on stdin; on stdout a JSON answer: when to
    renew and when the certificate expires (``renewAt``, ``expiresAt``), or on a ``CorralError`` its
    name and message and exit 1. Log lines go to stderr (the agent's)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    request = json.loads(sys.stdin.read())
    try:
        creds = asyncio.run(node_credentials(
            servers=request["servers"], data_dir=Path(request["dataDir"]), node=request["node"],
            node_ip=request["nodeIP"], join_token=request["joinToken"], renew=bool(request.get("renew", False))))
    except CorralError as e:
        sys.stdout.write(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return 1
    sys.stdout.write(json.dumps({"renewAt": creds.renew_at, "expiresAt": creds.expires_at}))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
