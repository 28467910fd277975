"""A controller's Events (Controller.record → the EventRecorder → Objects) on the real etcd: a repeat
is counted on the Event already written, which stays on an expiring lease."""

from __future__ import annotations

import uuid

from corral.aiokit.eventrecorder import EventRecorder
from corral.model.kinds import BY_KIND
from corral.model.resources import Event, ObjectReference
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.leases import BucketLeases
from corral.store.objects import Objects
from corral.store.typed import decode


async def test_a_repeated_controller_event_is_one_event_with_a_count_that_still_expires(etcd: EmbeddedEtcd) -> None:
    store = EtcdStore([etcd.endpoint])
    try:
        leases = BucketLeases(store, ttl=60)
        objects = Objects(store, event_leases=leases)
        recorder = EventRecorder(component="test-controller", create=objects.create, update=objects.update)
        about = ObjectReference(kind="Job", namespace="default", name=f"job-{uuid.uuid4().hex[:8]}", uid="u1")
        for _ in range(3):
            recorder.record(about, reason="BackoffLimitExceeded", message="the job failed 3 times", warning=True)
            await recorder.flush()
        page = await store.list(BY_KIND["Event"].prefix("default"))
        mine = [(kv, decode(kv, Event)) for kv in page.items]
        mine = [(kv, e) for kv, e in mine if e.spec.involved_object.name == about.name]
        assert len(mine) == 1
        kv, event = mine[0]
        assert (event.spec.count, event.spec.type, event.spec.source.component) == (3, "Warning", "test-controller")
        assert kv.lease == await leases.current()  # an update never makes it immortal
        assert (recorder.written, recorder.aggregated, sum(recorder.dropped.values())) == (1, 2, 0)
        await store.revoke_lease(kv.lease)
    finally:
        await store.close()
