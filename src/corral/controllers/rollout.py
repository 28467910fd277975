"""The arithmetic of a Deployment, as pure functions of plain data: revisions, bounds, plans, conditions.

corral has no ReplicaSets. A Deployment's containers carry the label ``corral.io/template-hash``
(a short hash of the template they were made from); the hash names a *revision*. The revisions the
Deployment has had live in its own annotations: ``corral.io/revision`` is the current number and
``corral.io/revision-history`` a JSON list of ``{"revision", "hash", "template"}`` (oldest first,
at most ``revisionHistoryLimit`` old ones besides the current). Going back to an old template
gives it a new number, as Kubernetes does, so numbers only grow.

``plan`` decides one bounded step of a rollout from a snapshot of the containers (``Replica``),
the way the ReplicaSet/Deployment controllers do, at container granularity:

- finished containers (Failed/Succeeded) are deleted and do not count; terminating ones neither;
- with one revision only, create or delete to reach ``replicas`` (worst containers go first:
  unscheduled, not running, not ready, not yet available, newest);
- RollingUpdate: create new-revision containers while the live total stays within
  ``replicas + maxSurge``; delete old ones only while availability stays at or above
  ``replicas - maxUnavailable`` (unhealthy old ones go first, they cost no availability);
- Recreate: delete every old container, and create the new ones once none is left, even terminating;
- paused: scaling only (new containers of the newest revision that has some), no rollout progress.

``progressing`` is the Progressing condition's state machine (ReplicaSetUpdated →
NewReplicaSetAvailable, or ProgressDeadlineExceeded when no progress was seen for
``progressDeadlineSeconds``; DeploymentPaused while paused).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from corral.model.lifecycle import parse_time, rfc3339
from corral.model.resources import Condition, ContainerTemplate

TEMPLATE_HASH_LABEL = "corral.io/template-hash"
REVISION_ANNOTATION = "corral.io/revision"
HISTORY_ANNOTATION = "corral.io/revision-history"

_sorted_encoder = msgspec.json.Encoder(order="sorted")
_ALPHABET = "0123456789bcdfghjklmnpqrstvwxz"  # no vowels: a hash never spells a word


def template_hash(template: ContainerTemplate) -> str:
    """A short, stable hash of a template (labels, annotations and spec; key order does not matter)."""
    digest = int.from_bytes(hashlib.sha256(_sorted_encoder.encode(template)).digest()[:8], "big")
    out = []
    for _ in range(10):
        digest, i = divmod(digest, len(_ALPHABET))
        out.append(_ALPHABET[i])
    return "".join(out)


# --- revision history ----------------------------------------------------------------------------


class RevisionEntry(msgspec.Struct, omit_defaults=True):
    revision: int
    hash: str
    template: ContainerTemplate


_history_decoder = msgspec.json.Decoder(list[RevisionEntry])
_history_encoder = msgspec.json.Encoder()


def read_history(annotations: dict[str, str]) -> list[RevisionEntry]:
    """The recorded revisions, oldest first; an unreadable annotation reads as no history."""
    text = annotations.get(HISTORY_ANNOTATION, "")
    if not text:
        return []
    try:
        return sorted(_history_decoder.decode(text), key=lambda e: e.revision)
    except msgspec.DecodeError:
        return []


def write_history(history: Sequence[RevisionEntry]) -> str:
    return _history_encoder.encode(list(history)).decode()


def record_revision(history: Sequence[RevisionEntry], template: ContainerTemplate, *,
                    limit: int) -> tuple[list[RevisionEntry], int, bool]:
    """``(history, revision, changed)`` once ``template`` is the current revision.

    The current revision is the last entry. A template seen before moves to a new number; the
    oldest entries go beyond ``limit`` old ones.
    """
    h = template_hash(template)
    entries = list(history)
    if entries and entries[-1].hash == h:
        return entries, entries[-1].revision, False
    revision = max((e.revision for e in entries), default=0) + 1
    entries = [e for e in entries if e.hash != h]
    entries.append(RevisionEntry(revision=revision, hash=h, template=template))
    keep = max(0, limit) + 1
    return entries[-keep:], revision, True


def undo_target(history: Sequence[RevisionEntry], to_revision: int = 0) -> RevisionEntry | None:
    """The entry ``rollout undo`` returns to: ``to_revision``, else the one before the current."""
    if to_revision:
        return next((e for e in history if e.revision == to_revision), None)
    return history[-2] if len(history) >= 2 else None


# --- bounds --------------------------------------------------------------------------------------


def scaled_value(value: int | str, total: int, *, round_up: bool) -> int:
    """An int, or a percentage of ``total`` rounded up (surge) or down (unavailable), like Kubernetes."""
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%"))
    exact = pct * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_bounds(replicas: int, max_surge: int | str, max_unavailable: int | str) -> tuple[int, int]:
    """(surge, unavailable); when both round to 0, one container may be unavailable (else no progress)."""
    surge = scaled_value(max_surge, replicas, round_up=True)
    unavailable = scaled_value(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


# --- plans ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replica:
    """One container of a Deployment, as the plan needs to see it."""

    name: str
    hash: str
    created: str = ""
    scheduled: bool = False
    running: bool = False
    ready: bool = False
    available: bool = False
    terminating: bool = False
    finished: bool = False  # Failed or Succeeded: it will not run again

    @property
    def live(self) -> bool:
        return not self.terminating and not self.finished


def worst_first(replicas: Sequence[Replica]) -> list[Replica]:
    """Deletion order: unscheduled, not running, not ready, not available, then newest first."""
    newest = sorted(replicas, key=lambda r: r.created, reverse=True)
    return sorted(newest, key=lambda r: (r.scheduled, r.running, r.ready, r.available))


@dataclass
class Plan:
    create: dict[str, int] = field(default_factory=dict)  # template hash -> how many to create
    delete: list[str] = field(default_factory=list)  # names, in order

    @property
    def empty(self) -> bool:
        return not self.create and not self.delete


Strategy = Literal["RollingUpdate", "Recreate"]


def plan(replicas: Sequence[Replica], *, want: int, new_hash: str, strategy: Strategy = "RollingUpdate",
         surge: int = 1, unavailable: int = 0, paused: bool = False, scale_hash: str = "") -> Plan:
    """One step towards ``want`` live containers of revision ``new_hash``; see the module docstring."""
    out = Plan()
    out.delete.extend(r.name for r in replicas if r.finished and not r.terminating)
    live = [r for r in replicas if r.live]
    new = [r for r in live if r.hash == new_hash]
    old = [r for r in live if r.hash != new_hash]

    if paused or not old:
        diff = want - len(live)
        if diff > 0:
            out.create[(scale_hash or new_hash) if paused else new_hash] = diff
        elif diff < 0:
            out.delete.extend(r.name for r in (worst_first(old) + worst_first(new))[:-diff])
        return out

    if strategy == "Recreate":
        return plan_recreate(replicas, want=want, new_hash=new_hash)

    min_available = max(0, want - unavailable)
    up = min(want + surge - len(live), want - len(new))
    if up > 0:
        out.create[new_hash] = up
    if len(new) > want:  # scaled down during the rollout
        extra = worst_first(new)[: len(new) - want]
        out.delete.extend(r.name for r in extra)
        gone = {r.name for r in extra}
        live = [r for r in live if r.name not in gone]
        new = [r for r in new if r.name not in gone]

    new_unavailable = sum(1 for r in new if not r.available)
    max_down = len(live) - min_available - new_unavailable
    if max_down <= 0:
        return out
    unhealthy = [r for r in worst_first(old) if not r.available][:max_down]
    out.delete.extend(r.name for r in unhealthy)
    available = sum(1 for r in live if r.available)
    healthy_down = available - min_available
    if healthy_down > 0:
        out.delete.extend(r.name for r in worst_first([r for r in old if r.available])[:healthy_down])
    return out


def plan_recreate(replicas: Sequence[Replica], *, want: int, new_hash: str) -> Plan:
    """Recreate: old containers go first; new ones come once nothing old is left, terminating or not."""
    if any(r.hash != new_hash and not r.finished for r in replicas):
        old = [r for r in replicas if r.hash != new_hash and r.live]
        done = [r.name for r in replicas if r.finished and not r.terminating]
        return Plan(delete=done + [r.name for r in worst_first(old)])
    return plan(replicas, want=want, new_hash=new_hash)


# --- status and conditions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    replicas: int = 0  # live containers
    updated: int = 0  # live containers of the current revision
    ready: int = 0
    available: int = 0


def count(replicas: Sequence[Replica], new_hash: str) -> Counts:
    live = [r for r in replicas if r.live]
    return Counts(
        replicas=len(live),
        updated=sum(1 for r in live if r.hash == new_hash),
        ready=sum(1 for r in live if r.ready),
        available=sum(1 for r in live if r.available),
    )


def complete(c: Counts, want: int) -> bool:
    return c.updated == want and c.replicas == want and c.available == want


def made_progress(before: Counts, after: Counts) -> bool:
    """Kubernetes' test: more updated, ready or available containers, or fewer old ones."""
    return (after.updated > before.updated or after.ready > before.ready or after.available > before.available
            or after.replicas - after.updated < before.replicas - before.updated)


def _set(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """Replace the condition of ``new``'s type; keep its transition time when the status is the same."""
    old = next((c for c in conditions if c.type == new.type), None)
    if old is not None and old.status == new.status:
        new.last_transition_time = old.last_transition_time
    return [*(c for c in conditions if c.type != new.type), new]


def progressing(conditions: Sequence[Condition], *, name: str, before: Counts, after: Counts, want: int,
                paused: bool, new_revision: bool, deadline: int, now: datetime) -> list[Condition]:
    """The Progressing condition after a sync (see the module docstring); other conditions kept."""
    stamp = rfc3339(now)
    current = next((c for c in conditions if c.type == "Progressing"), None)

    def cond(status: Literal["True", "False", "Unknown"], reason: str, message: str) -> list[Condition]:
        return _set(conditions, Condition(type="Progressing", status=status, reason=reason, message=message,
                                          last_transition_time=stamp, last_update_time=stamp))

    if paused:
        if current is not None and current.reason == "DeploymentPaused":
            return list(conditions)
        return cond("Unknown", "DeploymentPaused", f'deployment "{name}" is paused')
    if complete(after, want):
        if current is not None and current.reason == "NewReplicaSetAvailable":
            return list(conditions)
        return cond("True", "NewReplicaSetAvailable", f'deployment "{name}" has successfully progressed')
    if current is None or current.reason == "DeploymentPaused":
        return cond("True", "DeploymentResumed" if current else "NewReplicaSetCreated",
                    f'deployment "{name}" is progressing')
    if new_revision or made_progress(before, after):
        return cond("True", "ReplicaSetUpdated",
                    f'deployment "{name}" is progressing: {after.updated} of {want} updated, '
                    f"{after.available} available")
    if timed_out(current, deadline=deadline, now=now):
        if current.reason == "ProgressDeadlineExceeded":
            return list(conditions)
        return _set(conditions, Condition(
            type="Progressing", status="False", reason="ProgressDeadlineExceeded",
            message=f'deployment "{name}" has exceeded its progress deadline ({deadline}s without progress)',
            last_transition_time=stamp, last_update_time=stamp))
    return list(conditions)


def timed_out(current: Condition, *, deadline: int, now: datetime) -> bool:
    if current.reason in ("NewReplicaSetAvailable", "DeploymentPaused"):
        return False
    if current.reason == "ProgressDeadlineExceeded":
        return True
    last = parse_time(current.last_update_time or current.last_transition_time)
    return last is not None and now - last > timedelta(seconds=deadline)


def deadline_in(conditions: Sequence[Condition], *, deadline: int, now: datetime) -> float | None:
    """Seconds until the progress deadline passes, for a requeue; None when nothing is counting."""
    current = next((c for c in conditions if c.type == "Progressing"), None)
    if current is None or current.reason in ("NewReplicaSetAvailable", "DeploymentPaused",
                                             "ProgressDeadlineExceeded"):
        return None
    last = parse_time(current.last_update_time or current.last_transition_time)
    if last is None:
        return None
    return max(0.0, (last + timedelta(seconds=deadline) - now).total_seconds()) + 0.1


def available_condition(conditions: Sequence[Condition], *, after: Counts, want: int, unavailable: int,
                        now: datetime) -> list[Condition]:
    """Available: at least ``want - unavailable`` containers available; unchanged conditions keep their times."""
    stamp = rfc3339(now)
    ok = after.available >= want - unavailable
    status: Literal["True", "False"] = "True" if ok else "False"
    reason = "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable"
    old = next((c for c in conditions if c.type == "Available"), None)
    if old is not None and old.status == status and old.reason == reason:
        return list(conditions)
    return _set(conditions, Condition(
        type="Available", status=status, reason=reason,
        message=f"{after.available} of {want} available (at least {max(0, want - unavailable)} needed)",
        last_transition_time=stamp, last_update_time=stamp))
