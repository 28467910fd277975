"""The CNI protocol: exec a plugin, run a network configuration list (a "conflist") as a chain.

A plugin is an executable found in the plugin directories. It is told what to do by its environment
(``CNI_COMMAND`` = ADD | DEL | CHECK | VERSION, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_PATH`` where it finds the plugins it delegates to, e.g. bridge → host-local) and reads its
network configuration as JSON on stdin. ADD prints a result JSON on stdout; a failure prints
``{"code", "msg", "details"}`` and exits non-zero, which becomes a ``CniPluginError`` naming the plugin
(``CniTryAgainLater``, a ``TemporaryError``, for the spec's code 11 "try again later").

A conflist runs its plugins in order for ADD, in reverse for DEL (CHECK is not used). Each plugin gets its own
config plus the list's ``name`` and ``cniVersion``, the previous plugin's result as ``prevResult``
(ADD) or the result cached from ADD (DEL), and the runtime arguments it declared in
``capabilities`` under ``runtimeConfig`` (e.g. ``portMappings``). DEL tries every plugin even when one
fails — cleanup should go as far as it can — and then raises the first failure.

Plugins are asyncio subprocesses with a deadline; a plugin still running at the deadline is killed
(it is our own child, by its pid) and the call raises ``Timeout``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.model.errors import CorralError, NotFound, TemporaryError, Timeout

DEFAULT_PLUGIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
INSTALL_HINT = "install the CNI plugins: apt-get install containernetworking-plugins (or scripts/install-deps.sh)"
# Plugins such as portmap and bridge (ipMasq) exec iptables; make sure they find it.
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# CNI's well-known error codes (spec "Error" section); 11 means try again later.
TRY_AGAIN_LATER = 11

JSON = dict[str, Any]


class CniPluginError(CorralError):
    """A plugin failed: which plugin, for which command, and the plugin's own code, msg and details."""

    code = 500
    reason = "NetworkPluginFailed"

    def __init__(self, *, plugin: str, command: str, cni_code: int, msg: str, details: str = "") -> None:
        text = f"CNI plugin {plugin} {command} failed (code {cni_code}): {msg}"
        if details:
            text += f" ({details})"
        super().__init__(text)
        self.plugin = plugin
        self.command = command
        self.cni_code = cni_code
        self.msg = msg
        self.cni_details = details

    @property
    def temporary(self) -> bool:
        """The plugin asked to be called again later (code 11): raised as ``CniTryAgainLater``."""
        return isinstance(self, TemporaryError)


class CniTryAgainLater(CniPluginError, TemporaryError):
    """A plugin's code 11 ("try again later"): a ``TemporaryError``, retried a second later."""

    delay = 1.0


def plugin_error(*, plugin: str, command: str, cni_code: int, msg: str, details: str = "") -> CniPluginError:
    """The error for a plugin's failure, of the class its CNI code says (temporary or not)."""
    cls = CniTryAgainLater if cni_code == TRY_AGAIN_LATER else CniPluginError
    return cls(plugin=plugin, command=command, cni_code=cni_code, msg=msg, details=details)


@dataclass(frozen=True, slots=True)
class Invocation:
    """The runtime arguments of one chain run: which container, which netns path, which interface."""

    container_id: str
    netns: str  # a path; "" on DEL when the namespace is already gone
    ifname: str
    runtime_config: Mapping[str, Any] | None = None


def find_plugin(plugin: str, plugin_dirs: Sequence[Path]) -> Path:
    """The executable for plugin type ``plugin``, or ``NotFound`` with the install hint."""
    for d in plugin_dirs:
        candidate = d / plugin
        if os.access(candidate, os.X_OK):
            return candidate
    raise NotFound(f"CNI plugin {plugin!r} not found in {', '.join(map(str, plugin_dirs))}: {INSTALL_HINT}")


async def exec_plugin(
    plugin: str,
    command: str,
    conf: Mapping[str, Any],
    *,
    invocation: Invocation,
    plugin_dirs: Sequence[Path] = DEFAULT_PLUGIN_DIRS,
    timeout: float = 60.0,
) -> JSON | None:
    """Run one plugin once; return its parsed stdout (ADD and VERSION), ``None`` when it printed nothing."""
    exe = find_plugin(plugin, plugin_dirs)
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": invocation.container_id,
        "CNI_NETNS": invocation.netns,
        "CNI_IFNAME": invocation.ifname,
        "CNI_PATH": os.pathsep.join(map(str, plugin_dirs)),
        "PATH": os.environ.get("PATH", "") + os.pathsep + _SYSTEM_PATH,
    }
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(conf).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise Timeout(f"CNI plugin {plugin} {command} for {invocation.container_id} took over {timeout}s") from None
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise _plugin_error(plugin, command, out, err, proc.returncode)
    if not out.strip():
        return None
    try:
        parsed = json.loads(out)
    except ValueError:
        raise CniPluginError(
            plugin=plugin, command=command, cni_code=999, msg=f"bad result JSON: {out[:200]!r}"
        ) from None
    return parsed if isinstance(parsed, dict) else None


def _plugin_error(plugin: str, command: str, out: bytes, err: bytes, returncode: int | None) -> CniPluginError:
    try:
        body = json.loads(out)
        if isinstance(body, dict) and "msg" in body:
            return plugin_error(
                plugin=plugin,
                command=command,
                cni_code=int(body.get("code", 999)),
                msg=str(body["msg"]),
                details=str(body.get("details", "")),
            )
    except ValueError:
        pass
    text = (err or out).decode(errors="replace").strip()[:500]
    return CniPluginError(plugin=plugin, command=command, cni_code=999, msg=f"exit status {returncode}: {text}")


def _plugin_conf(conflist: Mapping[str, Any], plugin: Mapping[str, Any], *, inv: Invocation, prev: JSON | None) -> JSON:
    conf: JSON = {k: v for k, v in plugin.items() if k != "capabilities"}
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    wanted = {k for k, on in plugin.get("capabilities", {}).items() if on}
    runtime = {k: v for k, v in (inv.runtime_config or {}).items() if k in wanted}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev is not None:
        conf["prevResult"] = prev
    return conf


async def add_chain(
    conflist: Mapping[str, Any],
    inv: Invocation,
    *,
    plugin_dirs: Sequence[Path] = DEFAULT_PLUGIN_DIRS,
) -> JSON:
    """ADD every plugin in order, each chained to the previous result; return the final result."""
    result: JSON | None = None
    for plugin in conflist["plugins"]:
        conf = _plugin_conf(conflist, plugin, inv=inv, prev=result)
        out = await exec_plugin(plugin["type"], "ADD", conf, invocation=inv, plugin_dirs=plugin_dirs)
        if out is None:
            raise CniPluginError(plugin=plugin["type"], command="ADD", cni_code=999, msg="no result on stdout")
        result = out
    assert result is not None, "a conflist has at least one plugin"
    return result


async def del_chain(
    conflist: Mapping[str, Any],
    inv: Invocation,
    *,
    prev_result: JSON | None,
    plugin_dirs: Sequence[Path] = DEFAULT_PLUGIN_DIRS,
) -> None:
    """DEL every plugin in reverse order with the cached ADD result; raise the first failure at the end."""
    first: CorralError | None = None
    for plugin in reversed(conflist["plugins"]):
        conf = _plugin_conf(conflist, plugin, inv=inv, prev=prev_result)
        try:
            await exec_plugin(plugin["type"], "DEL", conf, invocation=inv, plugin_dirs=plugin_dirs)
        except CorralError as e:
            first = first or e
    if first is not None:
        raise first

