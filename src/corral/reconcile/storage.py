"""Step 2: the container's volumes exist and are ready to mount.

``emptyDir`` volumes are directories per container (gone with it), ``volume`` refers to a named
local volume (a directory that outlives containers), ``hostPath`` is passed through. The
directories themselves are ``corral.storage.volumes``'s business; this step translates the
container's spec into its calls and its answer into bind mounts for the runtime.
"""

from __future__ import annotations

from pathlib import Path

from corral.model.errors import FieldError, Invalid
from corral.model.resources import Container
from corral.runtime.spec import BindMount
from corral.storage import volumes as vol

NOSUID_NODEV = ("nosuid", "nodev")  # no set-uid binary or device node in a volume works in the container


class VolumeStep:
    def __init__(self, data_dir: Path) -> None:
        self.store = vol.Volumes(data_dir)

    async def ensure(self, obj: Container, *, prepared: dict[str, BindMount] | None = None) -> list[BindMount]:
        """Bind mounts for every volume mount; ``prepared``: volumes made elsewhere (secret volumes)."""
        sources: list[vol.VolumeSource] = []
        for v in obj.spec.volumes:
            if v.empty_dir is not None:
                sources.append(vol.VolumeSource(v.name, vol.EmptyDir()))
            elif v.volume:
                sources.append(vol.VolumeSource(v.name, vol.NamedVolume(v.volume)))
            elif v.host_path is not None:
                sources.append(vol.VolumeSource(v.name, vol.HostPath(v.host_path.path, v.host_path.type)))
        sc = obj.spec.security_context
        owner = (sc.run_as_user or 0, sc.run_as_group or 0) if sc is not None else (0, 0)
        paths = await self.store.ensure_volumes(obj.metadata.uid, obj.metadata.namespace, sources, owner=owner)
        mounts: list[BindMount] = []
        for i, m in enumerate(obj.spec.volume_mounts):
            ready = (prepared or {}).get(m.name)
            if ready is not None:  # secret volumes are always read-only
                mounts.append(BindMount(source=ready.source, destination=m.mount_path, readonly=True, options=NOSUID_NODEV))
                continue
            host = paths.get(m.name)
            if host is None:
                raise Invalid(f"volume {m.name!r} is not defined",
                              details=[FieldError(f"spec.volumeMounts[{i}].name", "no such volume")])
            mounts.append(BindMount(source=str(host), destination=m.mount_path, readonly=m.read_only, options=NOSUID_NODEV))
        return mounts

    async def remove_container(self, uid: str) -> None:
        await self.store.remove_container_volumes(uid)

    async def list_named(self) -> list[tuple[str, str]]:
        return await self.store.list_named_volumes()

    async def remove_named(self, namespace: str, name: str) -> None:
        await self.store.remove_named_volume(namespace, name)

    async def list_container_dirs(self) -> list[str]:
        return await self.store.list_container_volume_dirs()
