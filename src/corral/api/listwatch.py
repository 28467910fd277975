"""The agents' and the CLI's list+watch source: one kind of object through the API.

``ApiSource`` is the ``ListWatchSource`` (store/informer.py) for processes that reach the cluster
through the API, not etcd: keys are ``(namespace, name)``, an object's stamp is its (uid,
resourceVersion). ``list()`` asks at any version (``resourceVersion=0``: from the API's watch
cache, like client-go's reflector), so a thousand agents relisting after an API restart cost the
API a thousand small cache reads, not a thousand reads of etcd; ``watch(after)`` streams the
changes after that version, bookmarks included (they only move the resume point). A dropped
stream is an ``Unavailable`` (the informer resumes from the last version it saw, on the next
server), a version the API no longer keeps a ``Gone`` (the informer relists and replays the
difference). Namespace and selectors narrow what is followed, as the API's list and watch do.

``api_informer(client, Container, field_selector="spec.node=n1")`` is the shorthand for
``Informer(ApiSource(...))``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Generic, TypeVar

from corral.api.client import ApiClient
from corral.model import errors
from corral.model.resources import Object
from corral.store.informer import Delta, Informer, Listing

ObjT = TypeVar("ObjT", bound=Object)

NamespacedName = tuple[str, str]
"""(namespace, name); the namespace is "" for cluster-scoped kinds."""


def object_key(obj: Object) -> NamespacedName:
    return (obj.metadata.namespace, obj.metadata.name)


def listing_of(items: Iterable[ObjT], resource_version: str) -> Listing[NamespacedName, ObjT]:
    """A list answer of the API as a source's ``Listing`` (for ``Informer.prime``, too)."""
    return Listing([(object_key(o), o, (o.metadata.uid, o.metadata.resource_version)) for o in items],
                   _revision(resource_version))


def _revision(rv: str) -> int:
    try:
        return int(rv or 0)
    except ValueError:
        return 0


class ApiSource(Generic[ObjT]):
    """Every object of kind ``tp`` the selectors match, through ``client``; see the module docstring."""

    def __init__(self, client: ApiClient, tp: type[ObjT], *, namespace: str | None = None,
                 field_selector: str = "", label_selector: str = "") -> None:
        self.client = client
        self.tp = tp
        self.namespace = namespace
        self.field_selector = field_selector
        self.label_selector = label_selector

    @property
    def name(self) -> str:
        selectors = ",".join(s for s in (self.field_selector, self.label_selector) if s)
        return f"{self.tp.__name__}{' in ' + self.namespace if self.namespace else ''}" \
               f"{' (' + selectors + ')' if selectors else ''}"

    async def list(self) -> Listing[NamespacedName, ObjT]:
        items, rv = await self.client.list(self.tp, namespace=self.namespace, label_selector=self.label_selector,
                                           field_selector=self.field_selector, any_version=True)
        return listing_of(items, rv)

    async def watch(self, after: int) -> AsyncGenerator[Delta[NamespacedName, ObjT], None]:
        bookmarked: list[int] = []  # versions the API's bookmarks vouched for since the last delta

        def bookmark() -> Delta[NamespacedName, ObjT]:
            delta: Delta[NamespacedName, ObjT] = Delta(None, None, None, max(bookmarked))
            bookmarked.clear()
            return delta

        events = self.client.watch(self.tp, namespace=self.namespace, resource_version=str(after) if after else "",
                                   field_selector=self.field_selector, label_selector=self.label_selector,
                                   on_bookmark=lambda rv: bookmarked.append(_revision(rv)))
        try:
            async for ev in events:
                if bookmarked:
                    yield bookmark()
                obj = ev.object
                meta = obj.metadata
                if ev.type == "DELETED":
                    yield Delta(object_key(obj), None, None, _revision(meta.resource_version))
                else:
                    yield Delta(object_key(obj), obj, (meta.uid, meta.resource_version), _revision(meta.resource_version))
            if bookmarked:
                yield bookmark()
        except errors.CorralError:
            if bookmarked:  # the stream was cut: resume from the last version the API vouched for
                yield bookmark()
            raise
        finally:
            await events.aclose()


def api_informer(client: ApiClient, tp: type[ObjT], *, namespace: str | None = None, field_selector: str = "",
                 label_selector: str = "") -> Informer[NamespacedName, ObjT]:
    """An informer of the objects of kind ``tp`` the API shows (``namespace`` None: every namespace)."""
    return Informer(ApiSource(client, tp, namespace=namespace, field_selector=field_selector,
                              label_selector=label_selector))
