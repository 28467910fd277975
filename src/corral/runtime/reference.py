"""Image references: parse ``registry/repo:tag`` and ``repo@sha256:…`` into a ``Reference``.

The grammar is the one docker and containerd use (distribution's ``reference`` package):

    reference  := name [":" tag] ["@" digest]
    name       := [domain "/"] component ("/" component)*
    domain     := host [":" port]   -- the first part is a domain if it holds "." or ":",
                                       is "localhost", or is a bracketed IPv6 address
    component  := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 lowercase hex (other algorithms: algo ":" hex, 32+ chars)

Docker Hub defaults: no domain means ``docker.io``; a one-part repository on docker.io gets the
``library/`` prefix; no tag and no digest means ``:latest``. Docker Hub's API lives at
``registry-1.docker.io``, which ``api_host`` answers. When both a tag and a digest are given the digest
wins for resolution and the tag is kept for naming. Pure: no I/O; errors are ``Invalid`` with the
field ``image``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from corral.model.errors import FieldError, Invalid

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"(?P<algo>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[0-9a-fA-F]{32,})")
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*"
)
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed, normalised image reference.

    ``registry`` is the domain as named (``docker.io``, ``127.0.0.1:5000``, ``[::1]:5000``);
    ``repository`` the path inside it (``library/busybox``); ``tag`` and ``digest`` may both be set.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The canonical full name: ``docker.io/library/busybox:latest``, ``host/repo@sha256:…``."""
        out = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def locator(self) -> str:
        """``registry/repository`` without tag or digest (containerd's ``Locator``)."""
        return f"{self.registry}/{self.repository}"

    @property
    def object(self) -> str:
        """What to ask ``/v2/<repo>/manifests/<object>`` for: the digest if pinned, else the tag."""
        if self.digest is not None:
            return self.digest
        return self.tag if self.tag is not None else DEFAULT_TAG

    @property
    def api_host(self) -> str:
        """The ``host[:port]`` to connect to (Docker Hub's API host for ``docker.io``)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def hostname(self) -> str:
        """The registry's host without port or IPv6 brackets (``127.0.0.1``, ``::1``)."""
        return split_host_port(self.api_host)[0]

    def with_digest(self, digest: str) -> Reference:
        """The same name pinned to ``digest`` (tag kept)."""
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        return self.name


def _invalid(text: str, why: str) -> Invalid:
    return Invalid(
        f"invalid image reference {text!r}: {why}",
        details=[FieldError("image", why)],
    )


def split_host_port(domain: str) -> tuple[str, int | None]:
    """``"127.0.0.1:5000"`` → ``("127.0.0.1", 5000)``; ``"[::1]:5000"`` → ``("::1", 5000)``."""
    if domain.startswith("["):
        end = domain.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {domain!r}")
        host, rest = domain[1:end], domain[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"junk after ']' in {domain!r}")
        port_text = rest[1:] if rest else None
    elif ":" in domain:
        host, port_text = domain.rsplit(":", 1)
    else:
        host, port_text = domain, None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port {port_text!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (hosts that are always spoken to over HTTP)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_domain(text: str, domain: str) -> None:
    try:
        host, _port = split_host_port(domain)
    except ValueError as e:
        raise _invalid(text, f"bad registry {domain!r}: {e}") from None
    if domain.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid(text, f"bad IPv6 registry address {host!r}") from None
    elif not _HOSTNAME.fullmatch(host):
        raise _invalid(text, f"bad registry host {host!r}")


def _looks_like_domain(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost" or part.startswith("[")


def parse_reference(text: str) -> Reference:
    """Parse and normalise ``text``; raise ``Invalid`` saying what is wrong."""
    if not text or text != text.strip():
        raise _invalid(text, "must be a non-empty name without surrounding spaces")
    rest = text
    digest: str | None = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        m = _DIGEST.fullmatch(digest)
        if m is None:
            raise _invalid(text, f"bad digest {digest!r}: want 'sha256:<64 hex digits>'")
        if m["algo"] == "sha256" and (len(m["hex"]) != 64 or m["hex"] != m["hex"].lower()):
            raise _invalid(text, f"bad digest {digest!r}: sha256 needs 64 lowercase hex digits")
    # A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash and not (slash < 0 and rest.startswith("[")):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            why = f"bad tag {tag!r}: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
            raise _invalid(text, why)
    if not rest:
        raise _invalid(text, "missing repository name")
    first, sep, remainder = rest.partition("/")
    if sep and _looks_like_domain(first):
        registry, path = first, remainder
        _check_domain(text, registry)
    else:
        registry, path = DOCKER_HUB, rest
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if not path:
        raise _invalid(text, "missing repository name")
    for comp in path.split("/"):
        if not _COMPONENT.fullmatch(comp):
            why = (
                f"bad repository part {comp!r}: lowercase letters, digits and single separators "
                "('.', '_', '__', '-') only"
            )
            raise _invalid(text, why)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > _MAX_NAME:
        raise _invalid(text, f"name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
