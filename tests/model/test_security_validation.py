"""The security-relevant fields are checked before anything is stored: every bad one named."""

from __future__ import annotations

from corral.model import kinds, validation
from corral.model.resources import Secret
from tests.model.test_validation import fields_of

SECRET = kinds.BY_KIND["Secret"]


def test_secret_references_and_secret_volume_paths_are_checked() -> None:
    errors = fields_of({"metadata": {"name": "c"}, "spec": {
        "image": "busybox",
        "env": [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "../k"}}}],
        "volumes": [{"name": "s", "secret": {"secretName": "s", "defaultMode": 4096,
                                             "items": [{"key": "k", "path": "../../etc/passwd"}]}}],
        "imagePullSecrets": [{"name": "UPPER"}],
    }})
    assert {"spec.env[0].value", "spec.env[0].valueFrom.secretKeyRef.name", "spec.env[0].valueFrom.secretKeyRef.key",
            "spec.volumes[0].secret.defaultMode", "spec.volumes[0].secret.items[0].path",
            "spec.imagePullSecrets[0].name"} <= set(errors)


def test_a_probe_path_must_be_a_plain_absolute_path() -> None:
    for bad in ("healthz", "//evil.example/x", "/a b", "/x\r\nHost: y"):
        errors = fields_of({"metadata": {"name": "c"}, "spec": {
            "image": "busybox", "livenessProbe": {"httpGet": {"port": 80, "path": bad}}}})
        assert "spec.livenessProbe.httpGet.path" in errors, bad


def test_string_data_is_folded_into_data_and_cleared() -> None:
    obj = validation.decode({"metadata": {"name": "s"}, "stringData": {"a": "hi"}, "data": {"b": "aGk="}}, SECRET)
    assert isinstance(obj, Secret) and obj.data == {"a": "aGk=", "b": "aGk="} and obj.string_data == {}
