"""What a container takes from Secrets: env values, secret volumes, registry credentials.

The agent reads each Secret through the API (``SecretSource``: a GET by name; the API lets a node
read only the Secrets its containers use) when it creates the container — env values are fixed at
creation, like Kubernetes — and for secret volumes again on every ``refresh`` (the agent calls it
every few seconds for running containers), so a changed Secret shows in the files in place.

A Secret or key that is missing is not a crash: ``SecretMissing`` becomes the container's status
(Pending, reason ``CreateContainerConfigError``, a message naming the Secret and key — never a
value) and the key is retried a few seconds later; ``optional: true`` references are skipped.
Values never go to logs or Events: only names and keys do.
"""

from __future__ import annotations

import binascii
import json
from typing import Protocol

from corral.model import secrets
from corral.model.errors import CorralError, Invalid
from corral.model.resources import Container, Secret
from corral.runtime.auth import Credentials
from corral.runtime.spec import BindMount
from corral.storage.secretfiles import SecretFile, SecretFiles

RETRY_SECONDS = 5.0


class SecretMissing(CorralError):
    code = 404
    reason = "CreateContainerConfigError"


class SecretSource(Protocol):
    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        """The Secret, or None if there is none by that name."""
        ...


class _Lookup:
    """The Secrets of one container, each read once per pass."""

    def __init__(self, source: SecretSource, namespace: str) -> None:
        self.source = source
        self.namespace = namespace
        self._seen: dict[str, Secret | None] = {}

    async def get(self, name: str) -> Secret | None:
        if name not in self._seen:
            self._seen[name] = await self.source.get_secret(self.namespace, name)
        return self._seen[name]

    async def value(self, name: str, key: str, *, optional: bool, where: str) -> bytes | None:
        secret = await self.get(name)
        if secret is None:
            if optional:
                return None
            raise SecretMissing(f'{where}: secret "{name}" not found in namespace "{self.namespace}"')
        if key not in secret.data:
            if optional:
                return None
            raise SecretMissing(f'{where}: secret "{name}" has no key "{key}" (it has: {", ".join(sorted(secret.data))})')
        return secrets.decode_value(secret.data[key])


async def resolve_env(obj: Container, source: SecretSource | None) -> list[tuple[str, str]]:
    """The container's env with every ``secretKeyRef`` replaced by the Secret's value."""
    out: list[tuple[str, str]] = []
    lookup = _Lookup(source, obj.metadata.namespace) if source is not None else None
    for i, e in enumerate(obj.spec.env):
        ref = e.value_from.secret_key_ref if e.value_from is not None else None
        if ref is None:
            out.append((e.name, e.value))
            continue
        if lookup is None:
            raise SecretMissing(f"spec.env[{i}]: this agent cannot read secrets")
        raw = await lookup.value(ref.name, ref.key, optional=ref.optional, where=f"spec.env[{i}] ({e.name})")
        if raw is not None:
            out.append((e.name, raw.decode(errors="replace")))
    return out


async def pull_credentials(obj: Container, source: SecretSource | None) -> Credentials | None:
    """Registry credentials from the container's ``imagePullSecrets`` (docker config.json Secrets)."""
    if not obj.spec.image_pull_secrets or source is None:
        return None
    lookup = _Lookup(source, obj.metadata.namespace)
    auths: dict[str, object] = {}
    for i, ref in enumerate(obj.spec.image_pull_secrets):
        where = f"spec.imagePullSecrets[{i}]"
        raw = await lookup.value(ref.name, secrets.DOCKER_CONFIG_KEY, optional=False, where=where)
        assert raw is not None
        try:
            doc = json.loads(raw)
            Credentials.from_config(doc, source=f'secret "{ref.name}"')  # each one checked on its own
        except (ValueError, Invalid) as e:
            raise SecretMissing(f'{where}: secret "{ref.name}" is not a docker config.json: '
                                f'{e.message if isinstance(e, Invalid) else "not JSON"}') from None
        auths.update(doc.get("auths", {}))
    return Credentials.from_config({"auths": auths})


async def ensure_secret_volumes(obj: Container, source: SecretSource | None, files: SecretFiles, *,
                                owner: tuple[int, int] = (0, 0)) -> tuple[dict[str, BindMount], bool]:
    """Write every secret volume of the container; (volume name → read-only bind, whether a file changed)."""
    mounts: dict[str, BindMount] = {}
    changed = False
    volumes = [v for v in obj.spec.volumes if v.secret is not None]
    if not volumes:
        return mounts, False
    if source is None:
        raise SecretMissing("spec.volumes: this agent cannot read secrets")
    lookup = _Lookup(source, obj.metadata.namespace)
    for v in volumes:
        src = v.secret
        assert src is not None
        where = f"spec.volumes[{v.name}].secret"
        secret = await lookup.get(src.secret_name)
        if secret is None and not src.optional:
            raise SecretMissing(f'{where}: secret "{src.secret_name}" not found in namespace "{obj.metadata.namespace}"')
        try:
            data = secrets.decoded(secret) if secret is not None else {}
        except (binascii.Error, ValueError):
            raise SecretMissing(f'{where}: secret "{src.secret_name}" holds a value that is not base64') from None
        wanted: dict[str, SecretFile] = {}
        if src.items:
            for item in src.items:
                if item.key not in data:
                    raise SecretMissing(f'{where}: secret "{src.secret_name}" has no key "{item.key}"')
                wanted[item.path] = SecretFile(data[item.key], item.mode if item.mode is not None else src.default_mode)
        else:
            wanted = {k: SecretFile(b, src.default_mode) for k, b in data.items()}
        path, did = await files.write(obj.metadata.uid, v.name, wanted, owner=owner)
        changed = changed or did
        mounts[v.name] = BindMount(str(path), "", readonly=True)
    return mounts, changed
