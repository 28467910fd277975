"""corral.network: a node's container network — namespaces, the CNI chain, saved attachments.

The agent holds one ``Network(NetworkConfig(data_dir=...))`` and calls ``ensure(id, ports)`` before
it creates a container (runc joins ``network.netns_path(id)``) and ``remove(id)`` after it removed
one. ``netns`` makes namespaces, ``cni`` speaks the CNI protocol, ``config`` holds the plain data,
``attachments`` ties them together with the per-container records on disk, ``masq`` cleans up the
one thing the bridge plugin cannot when a namespace vanished first.

Network policy (nftables rules between pods, by label) is not here yet: TODO ``network/policy.py``.
"""

from corral.network.attachments import Network
from corral.network.cni import CniPluginError
from corral.network.config import Attachment, NetworkConfig, PortMapping

__all__ = ["Attachment", "CniPluginError", "Network", "NetworkConfig", "PortMapping"]
