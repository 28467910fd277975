"""Image references parse and normalise like docker's, and bad ones say what is wrong."""

from __future__ import annotations

import pytest

from corral.model.errors import Invalid
from corral.runtime.reference import Reference, is_loopback, parse_reference, split_host_port

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", Reference("docker.io", "library/busybox", "latest", None)),
        ("busybox:1.36", Reference("docker.io", "library/busybox", "1.36", None)),
        ("user/app", Reference("docker.io", "user/app", "latest", None)),
        ("docker.io/busybox", Reference("docker.io", "library/busybox", "latest", None)),
        ("index.docker.io/user/app:v1", Reference("docker.io", "user/app", "v1", None)),
        ("127.0.0.1:5000/busybox:1", Reference("127.0.0.1:5000", "busybox", "1", None)),
        ("localhost/a/b/c", Reference("localhost", "a/b/c", "latest", None)),
        ("ghcr.io/o/r_x.y-z:T_1.0-rc", Reference("ghcr.io", "o/r_x.y-z", "T_1.0-rc", None)),
        ("[::1]:5000/busybox:1", Reference("[::1]:5000", "busybox", "1", None)),
        (f"busybox@{DIGEST}", Reference("docker.io", "library/busybox", None, DIGEST)),
        (f"reg.example:443/app:v2@{DIGEST}", Reference("reg.example:443", "app", "v2", DIGEST)),
    ],
)
def test_a_valid_reference_parses_to_its_normalised_parts(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


def test_the_canonical_name_spells_out_the_docker_hub_defaults() -> None:
    ref = parse_reference("busybox")
    assert ref.name == "docker.io/library/busybox:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.object == "latest"


def test_a_pinned_digest_is_what_gets_resolved_even_with_a_tag() -> None:
    ref = parse_reference(f"127.0.0.1:5000/app:v1@{DIGEST}")
    assert ref.object == DIGEST
    assert ref.name == f"127.0.0.1:5000/app:v1@{DIGEST}"
    assert ref.api_host == "127.0.0.1:5000"
    assert ref.hostname == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "non-empty"),
        (" busybox", "non-empty"),
        ("BusyBox", "bad repository part 'BusyBox'"),
        ("busybox:", "bad tag ''"),
        ("busybox:-x", "bad tag '-x'"),
        ("busybox@sha256:abc", "bad digest"),
        ("busybox@sha256:" + "AB" * 32, "lowercase hex"),
        ("a//b", "bad repository part ''"),
        ("host:99999/app", "bad port"),
        ("bad_host.io/app", "bad registry host"),
        ("[::zz]:5000/app", "bad IPv6"),
        ("a" * 300, "longer than"),
    ],
)
def test_an_invalid_reference_is_rejected_saying_why(text: str, words: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_reference(text)
    assert words in err.value.message
    assert err.value.details[0].field == "image"


def test_host_and_port_split_including_bracketed_ipv6() -> None:
    assert split_host_port("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert split_host_port("[::1]:5000") == ("::1", 5000)
    assert split_host_port("example.com") == ("example.com", None)


def test_loopback_hosts_are_recognised() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.9.8.7") and is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")
