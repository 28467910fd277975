from typing import Any

import pytest

from corral.model import kinds, validation
from corral.model.errors import Invalid
from corral.model.names import parse_selector
from corral.model.resources import Container, Deployment

CONTAINER = kinds.BY_KIND["Container"]


def fields_of(data: dict[str, Any], info: kinds.KindInfo = CONTAINER) -> dict[str, str]:
    with pytest.raises(Invalid) as e:
        validation.decode(data, info)
    return {d.field: d.message for d in e.value.details}


def test_a_valid_container_decodes_with_defaults() -> None:
    obj = validation.decode({"metadata": {"name": "web"}, "spec": {"image": "busybox"}}, CONTAINER)
    assert isinstance(obj, Container)
    assert obj.spec.restart_policy == "Always"
    assert obj.spec.termination_grace_period_seconds == 10


def test_every_wrong_type_and_unknown_field_is_reported_at_once() -> None:
    errors = fields_of({
        "metadata": {"name": "web", "labels": {"a": 3}},
        "spec": {"imagee": "x", "ports": [{"containerPort": "80"}], "restartPolicy": "Sometimes"},
    })
    assert set(errors) == {"metadata.labels.a", "spec.imagee", "spec.ports[0].containerPort", "spec.restartPolicy"}
    assert "did you mean 'image'" in errors["spec.imagee"]


def test_every_meaning_problem_is_reported_at_once() -> None:
    errors = fields_of({
        "metadata": {"name": "Web_1"},
        "spec": {
            "image": "",
            "resources": {"requests": {"memory": "128Mi"}, "limits": {"cpu": "-1", "memory": "64Mi"}},
            "ports": [{"containerPort": 0, "hostPort": 70000}],
            "volumeMounts": [{"name": "data", "mountPath": "relative"}],
            "env": [{"name": "1BAD"}],
        },
    })
    assert set(errors) == {
        "metadata.name", "spec.image", "spec.resources.limits.cpu", "spec.resources.requests.memory",
        "spec.ports[0].containerPort", "spec.ports[0].hostPort", "spec.volumeMounts[0].name",
        "spec.volumeMounts[0].mountPath", "spec.env[0].name",
    }


def test_a_missing_required_field_is_named() -> None:
    errors = fields_of({"metadata": {"name": "web"}, "spec": {"image": "x", "ports": [{"hostPort": 80}]}})
    assert errors == {"spec.ports[0].containerPort": "is required"}


def test_a_kind_that_does_not_match_the_path_is_invalid() -> None:
    errors = fields_of({"kind": "Node", "metadata": {"name": "web"}, "spec": {"image": "x"}})
    assert "kind" in errors


def test_a_deployment_selector_must_match_its_template() -> None:
    errors = fields_of(
        {"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"image": "x"}},
            "strategy": {"rollingUpdate": {"maxSurge": "150%"}},
        }},
        kinds.BY_KIND["Deployment"],
    )
    assert set(errors) == {"spec.template.metadata.labels", "spec.strategy.rollingUpdate.maxSurge"}


def test_a_valid_deployment_decodes() -> None:
    obj = validation.decode(
        {"metadata": {"name": "web"}, "spec": {
            "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"image": "x"}},
        }},
        kinds.BY_KIND["Deployment"],
    )
    assert isinstance(obj, Deployment)
    assert obj.spec.replicas == 3


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("app=web", {"app": "web"}, True),
        ("app=web,tier!=db", {"app": "web", "tier": "db"}, False),
        ("app in (web, api)", {"app": "api"}, True),
        ("app notin (web)", {}, True),
        ("!canary", {"canary": "1"}, False),
        ("app", {"app": ""}, True),
    ],
)
def test_label_selectors_match_like_kubernetes(text: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(text).matches(labels) is matches


@pytest.mark.parametrize("text", ["app=a=b", "=web", "app in ()", "bad key=1", ","])
def test_bad_label_selectors_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_selector(text)
