"""Certificates: the cluster CA, the certificates it signs, and the names inside them.

Every key is ECDSA P-256 (fast to make and to handshake with; every TLS stack speaks it). The CA
is self-signed, valid 10 years; the certificates it issues are valid ``LEAF_DAYS`` (1 year) and
carry their purpose as an extended key usage (serverAuth, clientAuth, or both for a node, whose
one certificate authenticates its agent to the API and serves its listener).

Identities are the certificate's common name: ``node:<name>`` for a node, ``corral:api`` for the
API calling agents, ``corral:etcd-client``/``corral:etcd`` for the embedded etcd. Everything here
is pure (bytes in, bytes out); files are written by ``write_private`` with mode 0600.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.model.errors import Invalid
from corral.tls.names import API_CLIENT_CN as API_CLIENT_CN  # re-exported: callers of pki use them too
from corral.tls.names import NODE_DNS_SUFFIX as NODE_DNS_SUFFIX
from corral.tls.names import NODE_PREFIX as NODE_PREFIX
from corral.tls.names import node_dns_name as node_dns_name

CA_DAYS = 3650
LEAF_DAYS = 365

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise Invalid("only EC private keys are supported (corral makes P-256 keys)")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def ca_hash(ca_pem: bytes) -> str:
    """The CA's fingerprint as a join token pins it: SHA-256 (hex) of the PEM bytes that
    ``GET /cacerts`` serves (as k3s hashes its CA bundle)."""
    return hashlib.sha256(ca_pem).hexdigest()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Authority:
    """The cluster CA: its certificate and key, and the signing it does."""

    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def generate(cls, name: str = "corral-ca") -> Authority:
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def from_pem(cls, cert: bytes, key: bytes) -> Authority:
        authority = cls(load_cert(cert), load_key(key))
        if authority.cert.public_key() != authority.key.public_key():
            raise Invalid("the CA certificate and key do not belong together")
        constraints = authority.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise Invalid("the CA certificate is not a CA (basicConstraints CA:FALSE)")
        return authority

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    def issue(self, public_key: ec.EllipticCurvePublicKey, *, cn: str, server: bool = False, client: bool = False,
              dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), days: int = LEAF_DAYS) -> x509.Certificate:
        """A leaf certificate for ``public_key``: ``server`` (serverAuth, SANs ``dns``/``ips``),
        ``client`` (clientAuth), or both."""
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        now = _now()
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns)]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_pair(self, *, cn: str, server: bool = False, client: bool = False, dns: tuple[str, ...] = (),
                   ips: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
        """A new key and its certificate, both PEM."""
        key = new_key()
        cert = self.issue(key.public_key(), cn=cn, server=server, client=client, dns=dns, ips=ips)
        return cert_pem(cert), key_pem(key)

    def signed_this(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def make_csr(key: PrivateKey, cn: str) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_public_key(pem: bytes, *, expect_cn: str) -> ec.EllipticCurvePublicKey:
    """The public key of a certificate signing request whose signature checks and whose CN is
    ``expect_cn`` (the name asked for must be the name in the request)."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise Invalid(f"csr: not a PEM certificate signing request: {e}") from None
    if not csr.is_signature_valid:
        raise Invalid("csr: its signature does not match its key")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    if cn != expect_cn:
        raise Invalid(f"csr: its common name is {cn!r}, expected {expect_cn!r}")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Invalid("csr: only EC keys are accepted")
    return key


def remaining_fraction(cert: x509.Certificate) -> float:
    """How much of the certificate's validity is left (0 when expired, 1 when brand new)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    total = (end - start).total_seconds()
    return max(0.0, (end - _now()).total_seconds() / total) if total > 0 else 0.0


def ip_sans(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (0600: keys, and files next to them)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)
