"""corral.storage: node-local volumes (emptyDir, named local volumes, hostPath) — see ``volumes``."""

from corral.storage.volumes import EmptyDir, HostPath, NamedVolume, Volumes, VolumeSource

__all__ = ["EmptyDir", "HostPath", "NamedVolume", "VolumeSource", "Volumes"]
