"""The CNI protocol edges: plugin failures become corral errors naming the plugin; results are read right."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from corral.model.errors import NotFound, TemporaryError
from corral.network import Attachment, CniPluginError
from corral.network.cni import Invocation, exec_plugin, find_plugin
from tests.network.conftest import run

RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "corral0", "mac": "aa:00:00:00:00:01"},
        {"name": "veth1", "mac": "aa:00:00:00:00:02"},
        {"name": "eth0", "mac": "aa:00:00:00:00:03", "sandbox": "/var/run/netns/x"},
    ],
    "ips": [{"interface": 2, "address": "10.88.0.7/24", "gateway": "10.88.0.1"}],
}


def test_the_attachment_is_the_address_on_the_interface_inside_the_namespace() -> None:
    att = Attachment.from_result(RESULT, container_id="x", netns="/var/run/netns/x", port_mappings=())
    assert (att.ip, att.prefix_len, att.gateway, att.interface, att.mac) == (
        "10.88.0.7",
        24,
        "10.88.0.1",
        "eth0",
        "aa:00:00:00:00:03",
    )


async def test_a_failing_plugin_raises_an_error_naming_the_plugin_and_its_message(tmp_path: Path) -> None:
    bridge = f"crl{secrets.token_hex(2)}"  # the plugin makes the bridge before it fails on the netns
    conf = {
        "cniVersion": "1.0.0",
        "name": "t",
        "type": "bridge",
        "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": "10.254.254.0/24", "dataDir": str(tmp_path)},
    }
    missing_netns = Invocation("x", str(tmp_path / "no-such-netns"), "eth0")
    try:
        with pytest.raises(CniPluginError) as err:
            await exec_plugin("bridge", "ADD", conf, invocation=missing_netns)
    finally:
        await run("ip", "link", "del", bridge)
    assert err.value.plugin == "bridge" and "CNI plugin bridge ADD failed" in str(err.value)
    assert "no-such-netns" in err.value.msg and not err.value.temporary


def test_a_missing_plugin_says_how_to_install_it() -> None:
    with pytest.raises(NotFound, match="containernetworking-plugins"):
        find_plugin("no-such-plugin", [Path("/usr/lib/cni")])


async def test_a_plugin_that_says_try_again_later_raises_a_temporary_error(tmp_path: Path) -> None:
    plugin = tmp_path / "busy"  # a plugin of our own that answers CNI's code 11
    plugin.write_text('#!/bin/sh\necho \'{"cniVersion": "1.0.0", "code": 11, "msg": "busy"}\'\nexit 1\n')
    plugin.chmod(0o755)
    conf = {"cniVersion": "1.0.0", "name": "t", "type": "busy"}
    with pytest.raises(TemporaryError) as err:
        await exec_plugin("busy", "ADD", conf, invocation=Invocation("x", "/nonexistent", "eth0"),
                          plugin_dirs=[tmp_path])
    assert isinstance(err.value, CniPluginError) and err.value.temporary and err.value.cni_code == 11
    assert err.value.delay is not None
