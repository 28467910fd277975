"""The informer's named indexes and its one handler shape, without I/O: a source in memory.

``ScriptedSource`` is a ``ListWatchSource`` whose list answers what the test put in ``listing`` and
whose watch yields what the test pushes (a delta, or an error to raise), so every path of the
informer — list, watch, relist on ``Gone``, retry on ``Unavailable`` — is driven step by step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from corral.model.errors import Gone, Unavailable
from corral.model.resources import Container, ContainerSpec, ObjectMeta, OwnerReference
from corral.store.indexers import BY_CONTROLLER, BY_NODE, BY_OWNER, by_label, controller_uid, node_of, owner_uids
from corral.store.informer import Change, Delta, Informer, Listing
from tests.store.informers import running, until


def container(name: str, *, node: str = "", app: str = "", owners: tuple[str, ...] = (), rv: int = 1,
              uid: str = "") -> Container:
    return Container(
        metadata=ObjectMeta(name=name, namespace="default", uid=uid or f"uid-{name}", resource_version=str(rv),
                            labels={"app": app} if app else {},
                            owner_references=[OwnerReference(kind="Deployment", name=o, uid=o, controller=i == 0)
                                              for i, o in enumerate(owners)]),
        spec=ContainerSpec(image="busybox", node=node),
    )


class ScriptedSource:
    """A source in memory: ``listing`` is what ``list`` answers; ``push`` feeds the current watch."""

    name = "scripted"

    def __init__(self, *objects: Container, revision: int = 1) -> None:
        self.listing: list[Container] = list(objects)
        self.revision = revision
        self.lists = 0
        self.watched_after: list[int] = []
        self._feed: asyncio.Queue[Delta[str, Container] | Exception] = asyncio.Queue()

    async def list(self) -> Listing[str, Container]:
        self.lists += 1
        return Listing([(c.metadata.name, c, (c.metadata.uid, c.metadata.resource_version)) for c in self.listing],
                       self.revision)

    async def watch(self, after: int) -> AsyncGenerator[Delta[str, Container], None]:
        self.watched_after.append(after)
        while True:
            item = await self._feed.get()
            if isinstance(item, Exception):
                raise item
            yield item

    def put(self, c: Container) -> None:
        self.revision += 1
        self._feed.put_nowait(Delta(c.metadata.name, c, (c.metadata.uid, str(self.revision)), self.revision))

    def delete(self, name: str) -> None:
        self.revision += 1
        self._feed.put_nowait(Delta(name, None, None, self.revision))

    def fail(self, error: Exception) -> None:
        self._feed.put_nowait(error)


Call = tuple[str, str, str, str | None]  # (change, key, obj's node, old's node)


class Recorder:
    def __init__(self, informer: Informer[str, Container]) -> None:
        self.calls: list[Call] = []
        self.informer = informer
        informer.add_index(BY_NODE, node_of)  # (a no-op when the test added it)
        informer.add_handler(self.on_event)

    def on_event(self, change: Change, key: str, obj: Container, old: Container | None) -> None:
        # the indexes are up to date when handlers run
        filed = key in self.informer.keys_by_index(BY_NODE, obj.spec.node) if obj.spec.node else False
        assert filed == (change is not Change.DELETED and bool(obj.spec.node))
        self.calls.append((change, key, obj.spec.node, old.spec.node if old is not None else None))






def names(objects: list[Container]) -> list[str]:
    return sorted(c.metadata.name for c in objects)


async def test_an_object_moving_between_index_values_is_filed_under_its_new_value_only() -> None:
    source = ScriptedSource(container("a", node="n1"), container("b", node="n1"))
    informer: Informer[str, Container] = Informer(source)
    informer.add_index(BY_NODE, node_of)
    rec = Recorder(informer)
    async with running(informer):
        assert names(informer.by_index(BY_NODE, "n1")) == ["a", "b"]
        source.put(container("a", node="n2", rv=2))
        await until(lambda: len(rec.calls) == 3)
        assert names(informer.by_index(BY_NODE, "n1")) == ["b"]
        assert names(informer.by_index(BY_NODE, "n2")) == ["a"]
        assert rec.calls[-1] == (Change.MODIFIED, "a", "n2", "n1")
        source.put(container("b", rv=3))  # unbound: in no node's entry
        await until(lambda: len(rec.calls) == 4)
        assert informer.index_values(BY_NODE) == ["n2"]
        assert informer.by_index(BY_NODE, "n1") == []


async def test_a_deleted_object_leaves_every_index_and_its_handlers_get_the_last_version() -> None:
    source = ScriptedSource(container("a", node="n1", app="web", owners=("d1", "d2")))
    informer: Informer[str, Container] = Informer(source)
    informer.add_index(BY_NODE, node_of)
    informer.add_index(BY_OWNER, owner_uids)
    informer.add_index(BY_CONTROLLER, controller_uid)
    label_index, by_app = by_label("app")
    informer.add_index(label_index, by_app)
    rec = Recorder(informer)
    async with running(informer):
        assert names(informer.by_index(BY_OWNER, "d2")) == ["a"]
        assert names(informer.by_index(BY_CONTROLLER, "d1")) == ["a"]
        assert informer.by_index(BY_CONTROLLER, "d2") == []  # an owner, not the controller
        assert names(informer.by_index(label_index, "web")) == ["a"]
        source.delete("a")
        await until(lambda: len(rec.calls) == 2)
        assert rec.calls[-1] == (Change.DELETED, "a", "n1", None)
        for name in (BY_NODE, BY_OWNER, BY_CONTROLLER, label_index):
            assert informer.index_values(name) == []
        assert informer.get("a") is None and len(informer) == 0


async def test_a_relist_replaces_the_index_content_and_reports_the_difference() -> None:
    source = ScriptedSource(container("stays", node="n1"), container("moves", node="n1"), container("goes", node="n1"),
                            container("reborn", node="n1", uid="first"))
    informer: Informer[str, Container] = Informer(source)
    informer.add_index(BY_NODE, node_of)
    rec = Recorder(informer)
    async with running(informer):
        rec.calls.clear()
        # meanwhile, unseen by the watch: one moved, one went, one was deleted and made again
        # (another uid, same node), one is new; then the source lost the history
        source.listing = [container("stays", node="n1"), container("moves", node="n2", rv=5),
                          container("reborn", node="n1", uid="second", rv=5), container("new", node="n3", rv=5)]
        source.revision = 9
        source.fail(Gone("compacted"))
        await until(lambda: informer.relists == 1)
        assert names(informer.by_index(BY_NODE, "n1")) == ["reborn", "stays"]
        assert names(informer.by_index(BY_NODE, "n2")) == ["moves"]
        assert names(informer.by_index(BY_NODE, "n3")) == ["new"]
        assert sorted(informer.index_values(BY_NODE)) == ["n1", "n2", "n3"]
        assert informer.get("reborn") is not None and informer.get("reborn").metadata.uid == "second"  # type: ignore[union-attr]
        assert sorted(rec.calls) == sorted([
            (Change.MODIFIED, "moves", "n2", "n1"),
            (Change.DELETED, "reborn", "n1", None), (Change.ADDED, "reborn", "n1", None),  # another object
            (Change.ADDED, "new", "n3", None),
            (Change.DELETED, "goes", "n1", None),
        ])  # and "stays", unchanged, is no event
        reborn = [c[0] for c in rec.calls if c[1] == "reborn"]
        assert reborn == [Change.DELETED, Change.ADDED]
        assert informer.revision == 9 and source.watched_after[-1] == 9  # watches on from the new list


async def test_an_unavailable_source_is_watched_again_from_the_same_revision_without_a_relist() -> None:
    source = ScriptedSource(container("a", node="n1"))
    informer: Informer[str, Container] = Informer(source)
    rec = Recorder(informer)
    async with running(informer):
        source.put(container("b", node="n1"))
        await until(lambda: len(rec.calls) == 2)
        source.fail(Unavailable("etcd is restarting"))
        await until(lambda: len(source.watched_after) == 2)
        assert source.watched_after == [1, 2] and source.lists == 1 and informer.relists == 0


async def test_an_index_added_to_a_filled_informer_files_what_it_holds_and_a_second_add_is_a_no_op() -> None:
    source = ScriptedSource(container("a", node="n1"), container("b", node="n2"))
    informer: Informer[str, Container] = Informer(source)
    async with running(informer):
        informer.add_index(BY_NODE, node_of)
        informer.add_index(BY_NODE, lambda c: ("ignored",))
        assert names(informer.by_index(BY_NODE, "n2")) == ["b"]
        assert informer.by_index(BY_NODE, "ignored") == []
        with pytest.raises(KeyError):
            informer.by_index("no-such-index", "x")


async def test_a_failing_handler_neither_stops_the_informer_nor_the_other_handlers() -> None:
    source = ScriptedSource()
    informer: Informer[str, Container] = Informer(source)

    def broken(_change: Change, _key: str, _obj: Container, _old: Container | None) -> None:
        raise RuntimeError("a bug in a handler")

    informer.add_handler(broken)
    rec = Recorder(informer)
    async with running(informer):
        source.put(container("a"))
        source.put(container("b"))
        await until(lambda: len(rec.calls) == 2)
        assert [c[1] for c in rec.calls] == ["a", "b"] and informer.keys() == ["a", "b"]


async def test_a_bookmark_only_moves_the_revision_the_informer_resumes_from() -> None:
    source = ScriptedSource(container("a"))
    informer: Informer[str, Container] = Informer(source)
    rec = Recorder(informer)
    async with running(informer):
        source._feed.put_nowait(Delta(None, None, None, 40))
        source.fail(Unavailable("cut"))
        await until(lambda: len(source.watched_after) == 2)
        assert source.watched_after[-1] == 40 and len(rec.calls) == 1 and informer.keys() == ["a"]


async def test_a_stream_that_keeps_ending_at_once_is_watched_again_with_backoff_not_in_a_tight_loop() -> None:
    class EndsAtOnce(ScriptedSource):
        async def watch(self, after: int) -> AsyncGenerator[Delta[str, Container], None]:
            self.watched_after.append(after)
            return
            yield  # an async generator that yields nothing

    source = EndsAtOnce(container("a"))
    informer: Informer[str, Container] = Informer(source)
    async with running(informer):
        await asyncio.sleep(0.5)
    assert 2 <= len(source.watched_after) <= 8  # 0.05 s, 0.1 s, 0.2 s… apart, not thousands
    assert source.lists == 1 and informer.keys() == ["a"]
