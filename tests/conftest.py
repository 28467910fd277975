"""Shared fixtures: the real parts, each started once per session on private ports and directories.

Fixture modules live in tests/fixtures/ (one per part) and are loaded here as plugins.
"""

pytest_plugins = [
    "tests.fixtures.etcd",
    "tests.fixtures.control",
    "tests.fixtures.containerd",
    "tests.fixtures.registry",
    "tests.fixtures.host",
]
