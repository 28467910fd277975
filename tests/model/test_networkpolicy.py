"""NetworkPolicy objects: Kubernetes' shape and defaults, and validation that names every bad field."""

from typing import Any

import pytest

from corral.model import kinds, validation
from corral.model.errors import Invalid
from corral.model.networkpolicy import selector_of
from corral.model.resources import LabelSelector, LabelSelectorRequirement, NetworkPolicy

NETPOL = kinds.BY_KIND["NetworkPolicy"]


def decode(spec: dict[str, Any]) -> NetworkPolicy:
    obj = validation.decode({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}, NETPOL)
    assert isinstance(obj, NetworkPolicy)
    return obj


def fields_of(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as e:
        decode(spec)
    return {d.field: d.message for d in e.value.details}


def test_a_kubernetes_shaped_policy_decodes_with_every_kind_of_peer_and_port() -> None:
    obj = decode({
        "podSelector": {"matchLabels": {"app": "db"},
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                              {"namespaceSelector": {"matchLabels": {"team": "x"}},
                               "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
                              {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                     "ports": [{"port": 5432}, {"port": "metrics", "protocol": "UDP"},
                               {"port": 8000, "endPort": 8080}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
    })
    peers = obj.spec.ingress[0].from_
    assert peers[1].namespace_selector is not None and peers[1].pod_selector is not None
    assert peers[2].ip_block is not None and peers[2].ip_block.except_ == ["10.1.0.0/16"]
    assert [p.port for p in obj.spec.ingress[0].ports] == [5432, "metrics", 8000]
    assert obj.spec.policy_types == ["Ingress", "Egress"]


def test_policy_types_default_as_in_kubernetes() -> None:
    assert decode({}).spec.policy_types == ["Ingress"]
    assert decode({"egress": [{}]}).spec.policy_types == ["Ingress", "Egress"]
    assert decode({"policyTypes": ["Egress"]}).spec.policy_types == ["Egress"]


def test_every_bad_field_of_a_policy_is_named_at_once() -> None:
    errors = fields_of({
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In"},
                                             {"key": "x", "operator": "Exists", "values": ["y"]}]},
        "ingress": [{
            "from": [{}, {"ipBlock": {"cidr": "10.0.0.0/33"}},
                     {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24", "10.0.0.0/16"]}},
                     {"ipBlock": {"cidr": "10.0.0.1/24"}},
                     {"ipBlock": {"cidr": "fd00::/64"}},
                     {"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}],
            "ports": [{"port": 0}, {"port": 70000}, {"port": "Not_A_Name"}, {"port": "http", "endPort": 90},
                      {"port": 100, "endPort": 99}, {"endPort": 5}],
        }],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"bad key!": "v"}}}]}],
        "policyTypes": ["Ingress"],
    })
    assert set(errors) == {
        "spec.podSelector.matchExpressions[0].values", "spec.podSelector.matchExpressions[1].values",
        "spec.ingress[0].from[0]", "spec.ingress[0].from[1].ipBlock.cidr",
        "spec.ingress[0].from[2].ipBlock.except[0]", "spec.ingress[0].from[2].ipBlock.except[1]",
        "spec.ingress[0].from[3].ipBlock.cidr", "spec.ingress[0].from[4].ipBlock.cidr",
        "spec.ingress[0].from[5].ipBlock",
        "spec.ingress[0].ports[0].port", "spec.ingress[0].ports[1].port", "spec.ingress[0].ports[2].port",
        "spec.ingress[0].ports[3].endPort", "spec.ingress[0].ports[4].endPort", "spec.ingress[0].ports[5].endPort",
        "spec.egress", "spec.egress[0].to[0].namespaceSelector.matchLabels.bad key!",
    }
    assert "must have podSelector, namespaceSelector or ipBlock" in errors["spec.ingress[0].from[0]"]
    assert "strictly inside the cidr 10.0.0.0/16" in errors["spec.ingress[0].from[2].ipBlock.except[0]"]
    assert "did you mean '10.0.0.0/24'" in errors["spec.ingress[0].from[3].ipBlock.cidr"]
    assert "only IPv4" in errors["spec.ingress[0].from[4].ipBlock.cidr"]
    assert "policyTypes does not include Egress" in errors["spec.egress"]


def test_an_unknown_protocol_or_operator_is_refused_by_name() -> None:
    errors = fields_of({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]},
                        "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]})
    assert set(errors) == {"spec.podSelector.matchExpressions[0].operator", "spec.ingress[0].ports[0].protocol"}
    assert "'TCP', 'UDP'" in errors["spec.ingress[0].ports[0].protocol"]


def test_the_old_shape_is_refused_with_a_hint() -> None:
    errors = fields_of({"selector": {"matchLabels": {"a": "b"}}})
    assert "did you mean 'podSelector'" in errors["spec.selector"]


def test_a_deployment_refuses_match_expressions_it_would_not_honour() -> None:
    with pytest.raises(Invalid) as e:
        validation.decode({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "x", "operator": "Exists"}]},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"image": "busybox"}}}},
            kinds.BY_KIND["Deployment"])
    assert [d.field for d in e.value.details] == ["spec.selector.matchExpressions"]


def test_a_label_selector_matches_labels_and_expressions_together() -> None:
    sel = selector_of(LabelSelector(match_labels={"app": "web"}, match_expressions=[
        LabelSelectorRequirement("tier", "NotIn", ["dev"]), LabelSelectorRequirement("gone", "DoesNotExist")]))
    assert sel.matches({"app": "web", "tier": "prod"})
    assert sel.matches({"app": "web"})
    assert not sel.matches({"app": "web", "tier": "dev"})
    assert not sel.matches({"app": "web", "gone": ""})
    assert not sel.matches({"app": "db"})
    assert selector_of(LabelSelector()).matches({"anything": "x"})
