"""pyroute2's ``IPRoute`` without the rest of pyroute2: what a worker keeps in memory.

``import pyroute2`` (and so any ``from pyroute2.x import y``, which runs the package first) imports
every family pyroute2 supports: NDB with its SQLite schema, IPDB, wireless, IPVS, devlink, plan9,
conntrack… — 337 modules and ~6.5 MiB of a worker's resident memory (measured: 24.0 MiB for
``from pyroute2 import IPRoute``, 17.4 MiB for the same class this way). corral uses ``IPRoute``
and ``NetlinkError`` only.

So the package is registered in ``sys.modules`` as a bare package (its ``__path__`` and spec, its
``__init__`` not run) and the two submodules that hold those names are imported from it. The first
time anything asks the package itself for a name (``from pyroute2 import NDB`` in another module or
a test in the same process), ``__getattr__`` runs the real ``__init__`` in the same module object,
so pyroute2 behaves as if it had been imported normally, only later (a submodule asked for as a
name, ``from pyroute2 import config``, is imported alone). If pyroute2 was imported
already, it is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any


def _bare_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed as a package: the imports below raise the usual ImportError
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(attr: str) -> Any:
        """A submodule asked for by name (``from pyroute2 import config``) is imported; any other name
        runs the real ``__init__``, once, in this module."""
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        del package.__getattr__
        loader.exec_module(package)
        return getattr(package, attr)

    package.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[name] = package


_bare_package("pyroute2")

from pyroute2.iproute import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

__all__ = ["IPRoute", "NetlinkError"]
