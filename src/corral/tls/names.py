"""The names inside corral's certificates, apart from the code that makes and reads certificates.

``pki`` (cryptography) makes and parses certificates; a worker only needs to know these names (who
may call its listener, which name its certificate answers to), and keeping them here lets it do
that without loading cryptography (~10 MiB of its memory: the library's Rust extension alone is
8 MiB resident). ``pki`` re-exports them.
"""

from __future__ import annotations

NODE_PREFIX = "node:"
API_CLIENT_CN = "corral:api"
NODE_DNS_SUFFIX = ".nodes.corral"  # a node's certificate names it <node>.nodes.corral; the API checks that name


def node_dns_name(node: str) -> str:
    return node + NODE_DNS_SUFFIX
