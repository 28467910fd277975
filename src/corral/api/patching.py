"""PATCH: a change described by the client, applied by the server to the stored object.

Two formats, chosen by ``Content-Type``:

- ``application/merge-patch+json`` (RFC 7386): a JSON object laid over the stored one; objects
  merge key by key, ``null`` removes a key, anything else replaces. Written here (a dozen lines).
- ``application/json-patch+json`` (RFC 6902): a list of operations (add, remove, replace, move,
  copy, test) on JSON pointers, applied with the ``jsonpatch`` library.

The patched document then goes through the same path as a PUT (decode, validation, admission,
CAS on the revision that was patched), so a PATCH can do nothing a PUT could not, and a client
needs no read-modify-write loop for a simple change. Patches are pure functions of JSON here.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import msgspec

from corral.model.errors import BadRequest, Conflict, FieldError, Invalid

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH)


def full_document(value: Any) -> Any:
    """An object as JSON-ready data with every field spelled out, defaults included (the stored JSON
    leaves defaults out), so a JSON patch's paths exist as a client reading the schema expects:
    ``replace /spec/replicas`` works while replicas is still the default 1."""
    if isinstance(value, msgspec.Struct):
        return {f.encode_name: full_document(getattr(value, f.name)) for f in msgspec.structs.fields(value)}
    if isinstance(value, list):
        return [full_document(v) for v in value]
    if isinstance(value, dict):
        return {k: full_document(v) for k, v in value.items()}
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``patch`` laid over ``target`` (neither is changed; a new document is returned)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: ``operations`` applied to a copy of ``target``. A failed ``test`` is a Conflict
    (the document is not what the client expected); a bad operation names its index."""
    if not isinstance(operations, list):
        raise BadRequest("a JSON patch is a list of operations, e.g. [{\"op\": \"replace\", \"path\": \"/spec/replicas\", \"value\": 3}]")
    for i, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise Invalid(f"patch[{i}]: each operation needs \"op\" and \"path\"",
                          details=[FieldError(f"patch[{i}]", "needs \"op\" and \"path\"")])
    try:
        return jsonpatch.apply_patch(target, operations, in_place=False)
    except jsonpatch.JsonPatchTestFailed as e:
        raise Conflict(f"the patch's test failed: {e}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise Invalid(f"the patch cannot be applied: {e}", details=[FieldError("patch", str(e))]) from None
    except (TypeError, KeyError, IndexError, ValueError) as e:
        raise Invalid(f"the patch cannot be applied: {e}", details=[FieldError("patch", str(e))]) from None


def apply_patch(content_type: str, target: Any, patch: Any) -> Any:
    """``patch`` (already parsed JSON) applied to ``target`` in the format ``content_type`` names."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise BadRequest("a merge patch is a JSON object")
        return merge_patch(target, patch)
    if kind == JSON_PATCH:
        return json_patch(target, patch)
    raise BadRequest(f"PATCH needs Content-Type {MERGE_PATCH} or {JSON_PATCH}, not {kind or 'none'!r}")
