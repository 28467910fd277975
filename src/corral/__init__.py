"""corral — a container orchestrator: one asyncio program, real parts (etcd, containerd, runc, CNI)."""

__version__ = "0.1.0"
