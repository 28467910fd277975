"""An agent makes a named volume's directory only for a Volume bound to its own node."""

from __future__ import annotations

from corral.model.resources import ObjectMeta, Volume, VolumeStatus
from corral.roles.agentvolumes import volume_placement


def test_only_a_volume_bound_to_this_node_may_be_provisioned_here() -> None:
    volumes = {
        ("default", "here"): Volume(metadata=ObjectMeta(name="here"), status=VolumeStatus(phase="Bound", node="n1")),
        ("default", "there"): Volume(metadata=ObjectMeta(name="there"), status=VolumeStatus(phase="Bound", node="n2")),
        ("default", "unbound"): Volume(metadata=ObjectMeta(name="unbound")),
    }
    check = volume_placement(volumes, "n1")
    assert check("default", "here") is None
    assert check("default", "there") == "volume default/there is bound to node n2, not n1: its data is there"
    assert check("default", "unbound") == "volume default/unbound is not bound to a node yet"
    assert check("default", "missing") == "volume default/missing is not created or bound yet"
