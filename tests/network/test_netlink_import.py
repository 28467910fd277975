"""corral.network.netlink: IPRoute without pyroute2's package ``__init__``, which still runs when asked."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from corral.network.netlink import IPRoute, NetlinkError
lean = "pyroute2.ndb.main" not in sys.modules and "sqlite3" not in sys.modules
with IPRoute() as ipr:
    links = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
from pyroute2 import NDB, IPRoute as Full, config
print(lean, "lo" in links, Full is IPRoute, NDB.__name__, config.__name__, issubclass(NetlinkError, Exception))
"""


def test_iproute_comes_without_the_rest_of_pyroute2_which_loads_when_a_name_from_it_is_asked_for() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "True", "NDB", "pyroute2.config", "True"]
