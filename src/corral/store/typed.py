"""The typed layer over the Store: kinds to keys, objects to bytes and back.

An object's key is ``/corral/<plural>/<namespace>/<name>`` (cluster-scoped kinds:
``/corral/<plural>/<name>``); its value is its JSON without ``metadata.resourceVersion``, which is
not stored but read back from the key's ``mod_revision``: the revision *is* the version, so it can
never disagree with etcd's compare-and-swap.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from corral.model.kinds import KindInfo
from corral.model.resources import Object, with_phase
from corral.store.base import KeyValue, WatchEvent

ObjT = TypeVar("ObjT", bound=Object)

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}  # each decodes to its key


def encode(obj: Object) -> bytes:
    """The stored form: the object without its resourceVersion."""
    rv = obj.metadata.resource_version
    if not rv:
        return with_phase(obj.kind, _encoder.encode(obj))
    obj.metadata.resource_version = ""
    try:
        return with_phase(obj.kind, _encoder.encode(obj))
    finally:
        obj.metadata.resource_version = rv


def decode_bytes(value: bytes, tp: type[ObjT], *, revision: int) -> ObjT:
    decoder = _decoders.get(tp)
    if decoder is None:
        decoder = _decoders[tp] = msgspec.json.Decoder(tp)
    obj: ObjT = decoder.decode(value)
    obj.metadata.resource_version = str(revision)
    return obj


def decode(kv: KeyValue, tp: type[ObjT]) -> ObjT:
    return decode_bytes(kv.value, tp, revision=kv.mod_revision)


def decode_event(event: WatchEvent, tp: type[ObjT]) -> ObjT:
    return decode_bytes(event.value, tp, revision=event.revision)


def key_of(info: KindInfo, obj: Object) -> str:
    return info.key(obj.metadata.namespace, obj.metadata.name)
