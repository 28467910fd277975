"""The CA, certificates, CSRs and K10 join tokens, without I/O."""

from __future__ import annotations

import hashlib

import pytest

from corral.model.errors import Invalid, Unauthorized
from corral.tls import pki
from corral.tls.tokens import JoinToken, format_token


def test_the_ca_hash_is_the_sha256_of_the_pem_bytes_and_a_k10_token_round_trips() -> None:
    ca = pki.Authority.generate()
    assert pki.ca_hash(ca.cert_pem) == hashlib.sha256(ca.cert_pem).hexdigest()
    token = format_token(ca.cert_pem, "s3cret::with-colons")
    assert token.startswith("K10" + pki.ca_hash(ca.cert_pem) + "::")
    parsed = JoinToken.parse(token)
    assert parsed.ca_hash == pki.ca_hash(ca.cert_pem) and parsed.secret == "s3cret::with-colons"


@pytest.mark.parametrize("text", ["just-a-secret", "K10abc::secret", "K10" + "g" * 64 + "::x", "K10" + "0" * 64 + "::"])
def test_a_token_that_does_not_pin_a_ca_is_refused_saying_what_shape_it_needs(text: str) -> None:
    with pytest.raises(Unauthorized, match="K10<sha256"):
        JoinToken.parse(text)


def test_a_signed_csr_gives_a_certificate_for_its_key_that_chains_to_the_ca() -> None:
    ca = pki.Authority.generate()
    key = pki.new_key()
    public = pki.csr_public_key(pki.make_csr(key, "node:n1"), expect_cn="node:n1")
    cert = ca.issue(public, cn="node:n1", client=True, server=True, dns=("n1.nodes.corral",), ips=("10.0.0.5",))
    assert pki.common_name(cert) == "node:n1" and pki.ip_sans(cert) == ["10.0.0.5"]
    assert ca.signed_this(cert) and not pki.Authority.generate().signed_this(cert)
    assert 0.99 < pki.remaining_fraction(cert) <= 1.0


def test_a_csr_naming_someone_else_or_garbage_is_invalid() -> None:
    csr = pki.make_csr(pki.new_key(), "node:victim")
    with pytest.raises(Invalid, match="node:victim"):
        pki.csr_public_key(csr, expect_cn="node:me")
    with pytest.raises(Invalid, match="PEM"):
        pki.csr_public_key(b"not a csr", expect_cn="node:me")


def test_a_ca_whose_key_does_not_match_its_certificate_is_refused() -> None:
    a, b = pki.Authority.generate(), pki.Authority.generate()
    with pytest.raises(Invalid, match="belong together"):
        pki.Authority.from_pem(a.cert_pem, b.key_pem)
    leaf_cert, leaf_key = a.issue_pair(cn="x", server=True)
    with pytest.raises(Invalid, match="not a CA"):
        pki.Authority.from_pem(leaf_cert, leaf_key)
