"""Secrets: the rules of their content, and the one place their values are decoded.

A Secret is Kubernetes-shaped: ``data`` maps keys to base64 values, ``stringData`` maps keys to plain
text and is write-only — ``merge_string_data`` folds it into ``data`` (base64-encoded, winning over a
``data`` entry of the same key) before anything is stored, so a stored or served Secret never holds
``stringData``. Keys are what a file name in a secret volume may be: letters, digits, ``-``, ``_``,
``.``, at most 253 characters, never ``.`` or ``..``. ``type`` is free text like Kubernetes'
(``Opaque`` by default); ``corral.io/dockerconfigjson`` (and Kubernetes' ``kubernetes.io/dockerconfigjson``)
must carry a ``.dockerconfigjson`` key holding a docker ``config.json`` (``{"auths": {...}}``): such a
Secret is what ``imagePullSecrets`` name.

Where Secrets are protected is elsewhere: encrypted at rest by ``store/sealing.py``, hidden from
``view`` tokens and from ``corral get`` (``--show-secrets``) by the API and the CLI, never put in
Events or logs by the agent (it logs key names, never values).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from corral.model.errors import FieldError
from corral.model.resources import Secret

KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
DOCKER_CONFIG_TYPES = ("corral.io/dockerconfigjson", "kubernetes.io/dockerconfigjson")
DOCKER_CONFIG_KEY = ".dockerconfigjson"
MAX_TOTAL_BYTES = 1024 * 1024  # like Kubernetes: a Secret's decoded data is at most 1 MiB


def key_problem(key: str) -> str | None:
    if key in (".", "..") or not KEY_RE.match(key):
        return "a key must be 1-253 letters, digits, '-', '_' or '.' (and not '.' or '..')"
    return None


def merge_string_data(secret: Secret) -> None:
    """Fold ``stringData`` into ``data`` (base64) and clear it: what is stored never has it."""
    for key, text in secret.string_data.items():
        secret.data[key] = base64.b64encode(text.encode()).decode()
    secret.string_data = {}


def decode_value(value: str) -> bytes:
    """One ``data`` value's bytes (strict base64); ``binascii.Error`` when it is not base64."""
    return base64.b64decode(value.encode(), validate=True)


def decoded(secret: Secret) -> dict[str, bytes]:
    """Every key's bytes (the Secret has been validated, so the base64 is good)."""
    return {k: decode_value(v) for k, v in secret.data.items()}


def validate_secret(secret: Secret, errors: list[FieldError]) -> None:
    """Every bad key and value, named (``data.<key>``, ``stringData.<key>``, ``type``)."""
    total = 0
    for field, mapping in (("stringData", secret.string_data), ("data", secret.data)):
        for key, value in mapping.items():
            if problem := key_problem(key):
                errors.append(FieldError(f"{field}.{key}", problem))
            if field == "data":
                try:
                    total += len(decode_value(value))
                except (binascii.Error, ValueError):
                    errors.append(FieldError(f"data.{key}", "is not valid base64 (use stringData for plain text)"))
            else:
                total += len(value.encode())
    if total > MAX_TOTAL_BYTES:
        errors.append(FieldError("data", f"holds {total} bytes; a Secret may hold at most {MAX_TOTAL_BYTES}"))
    if not secret.type or len(secret.type) > 253 or any(c.isspace() for c in secret.type):
        errors.append(FieldError("type", "must be a word such as 'Opaque' or 'corral.io/dockerconfigjson'"))
    if secret.type in DOCKER_CONFIG_TYPES:
        _check_docker_config(secret, errors)


def _check_docker_config(secret: Secret, errors: list[FieldError]) -> None:
    if DOCKER_CONFIG_KEY in secret.string_data:
        raw = secret.string_data[DOCKER_CONFIG_KEY].encode()
        where = f"stringData.{DOCKER_CONFIG_KEY}"
    elif DOCKER_CONFIG_KEY in secret.data:
        where = f"data.{DOCKER_CONFIG_KEY}"
        try:
            raw = decode_value(secret.data[DOCKER_CONFIG_KEY])
        except (binascii.Error, ValueError):
            return  # already reported
    else:
        errors.append(FieldError(f"data.{DOCKER_CONFIG_KEY}", f"is required for type {secret.type}"))
        return
    try:
        doc: Any = json.loads(raw)
    except ValueError:
        errors.append(FieldError(where, "must be a docker config.json (JSON)"))
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("auths"), dict):
        errors.append(FieldError(where, 'must be a docker config.json: {"auths": {"<registry>": {...}}}'))
