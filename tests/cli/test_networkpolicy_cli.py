"""NetworkPolicy through the CLI and a real control plane: apply, get, and a refusal naming each field."""

from __future__ import annotations

from tests.cli.conftest import Corral

POLICY = """\
kind: NetworkPolicy
metadata: {name: db-in, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
      ports: [{port: 5432}, {port: metrics, protocol: UDP}]
"""


async def test_a_policy_is_applied_listed_with_its_defaulted_types_and_deleted(corral: Corral) -> None:
    applied = await corral("apply", "-f", "-", stdin=POLICY)
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.splitlines() == ["networkpolicy/db-in created"]
    table = await corral("get", "netpol")
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "POD-SELECTOR", "POLICY-TYPES", "AGE"]
    assert [r.split()[:3] for r in rows] == [["db-in", "app=db", "Ingress"]]
    described = await corral("describe", "networkpolicy", "db-in")
    assert described.exit_code == 0, described.output
    assert "from:" in described.stdout and "except:" in described.stdout and "policyTypes:" in described.stdout, \
        described.stdout
    deleted = await corral("delete", "networkpolicy", "db-in")
    assert deleted.exit_code == 0, deleted.output


async def test_a_bad_policy_is_refused_with_every_bad_field(corral: Corral) -> None:
    bad = POLICY.replace("10.1.0.0/16", "11.0.0.0/16").replace("5432", "70000").replace("UDP", "SCTP")
    result = await corral("apply", "-f", "-", stdin=bad)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: networkpolicy/db-in is invalid (1 problem):", lines
    assert lines[1].startswith("  spec.ingress[0].ports[1].protocol: must be one of 'TCP', 'UDP'")
    bad = bad.replace("SCTP", "UDP")
    result = await corral("apply", "-f", "-", stdin=bad)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == [
        "  spec.ingress[0].from[1].ipBlock.except[0]: 11.0.0.0/16 must lie strictly inside the cidr 10.0.0.0/8",
        "  spec.ingress[0].ports[0].port: must be a port number between 1 and 65535",
    ]
