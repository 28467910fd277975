"""``corral apply -f FILE``: create each object in a file, or bring the existing one to what it says.

Each YAML/JSON document names its kind; it is created with POST (the server validates it and
names every bad field). When the name is taken the current object is read and, unless the file
already matches it, written back with the file's ``spec`` and ``labels`` (its ``annotations`` are
added) at the current resourceVersion — so status, finalizers, owners and fields the system sets
(a container's ``spec.node`` when the file leaves it out) are kept. A lost race (409 Conflict) is
retried once from a fresh read. Namespaces in the file are applied before the objects in them.
Every document is tried; the exit code is 1 when any failed.

``--dry-run=server`` sends the same writes with ``?dryRun=All``: the server validates, authorizes
and checks them, and stores nothing. ``--wait`` then follows what was applied until it is ready —
a Deployment rolled out (``corral rollout status``'s rule), a Container Running (or Succeeded) —
and exits 1 if one fails (a rollout past its progress deadline, a container Failed) or the
``--timeout`` passes. ``corral diff -f FILE`` (``cli/diff.py``) shows what apply would change.
"""

from __future__ import annotations

import copy
import sys
from typing import Any, TextIO

import click
import msgspec
import yaml

from corral.api.client import ApiClient
from corral.api.retrying import retry_on_conflict
from corral.cli import output
from corral.cli.connection import api_command, connection_options
from corral.model.errors import AlreadyExists, CorralError, Unavailable
from corral.model.kinds import CONTAINERS, NAMESPACES, NODES, KindInfo

#: spec fields the system fills in; a file that leaves them empty keeps the current value
SYSTEM_SPEC_FIELDS: dict[KindInfo, tuple[str, ...]] = {CONTAINERS: ("node",), NODES: ("podCidr",)}


class Document(msgspec.Struct, frozen=True):
    index: int  # 1-based, for messages
    info: KindInfo
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))


def load_documents(text: str, source: str) -> list[Document]:
    """Every non-empty document of ``text``; a corral error for bad YAML or an unknown kind."""
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise CorralError(f"{source} is not valid YAML or JSON{where}: {problem}") from None
    docs: list[Document] = []
    for i, body in enumerate(raw, start=1):
        if isinstance(body, dict) and body.get("kind") == "List" and isinstance(body.get("items"), list):
            items = body["items"]
        else:
            items = [body]
        for item in items:
            if not isinstance(item, dict):
                raise CorralError(f"document {i} of {source} is a {type(item).__name__}, not an object with a kind")
            kind = item.get("kind")
            if not isinstance(kind, str) or not kind:
                raise CorralError(f'document {i} of {source} has no "kind"; say what it is, e.g. kind: Container')
            try:
                info = output.kind_info(kind)
            except CorralError as e:
                raise CorralError(f"document {i} of {source}: {e.message}") from None
            if not isinstance(item.get("metadata", {}), dict):
                raise CorralError(f"document {i} of {source}: metadata must be an object")
            docs.append(Document(i, info, item))
    namespaces_first = sorted(docs, key=lambda d: d.info is not NAMESPACES)
    return namespaces_first


def object_path(info: KindInfo, namespace: str, name: str = "") -> str:
    base = f"/namespaces/{namespace}/{info.plural}" if info.namespaced else f"/{info.plural}"
    return f"{base}/{name}" if name else base


def desired_update(current: dict[str, Any], doc: dict[str, Any], info: KindInfo) -> dict[str, Any]:
    """``current`` with the file's spec, labels and annotations: the body of the PUT."""
    new = copy.deepcopy(current)
    spec = copy.deepcopy(doc.get("spec") or {})
    if isinstance(spec, dict):
        for key in SYSTEM_SPEC_FIELDS.get(info, ()):
            if not spec.get(key) and (current.get("spec") or {}).get(key):
                spec[key] = current["spec"][key]
    new["spec"] = spec
    meta_doc = doc.get("metadata") or {}
    meta = new.setdefault("metadata", {})
    labels = meta_doc.get("labels")
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    if meta_doc.get("annotations"):
        meta["annotations"] = {**(meta.get("annotations") or {}), **meta_doc["annotations"]}
    return new


def unchanged(current: dict[str, Any], new: dict[str, Any], info: KindInfo) -> bool:
    """Whether writing ``new`` would change nothing that the file sets (compared after defaults)."""
    try:
        a = msgspec.convert(current, info.type)
        b = msgspec.convert(new, info.type)
    except msgspec.ValidationError:
        return False  # let the server say what is wrong
    return bool(
        msgspec.json.encode(a.spec) == msgspec.json.encode(b.spec)
        and a.metadata.labels == b.metadata.labels
        and a.metadata.annotations == b.metadata.annotations
    )


def doc_namespace(doc: Document, namespace: str) -> str:
    """The namespace a document goes to ("" for cluster-scoped kinds)."""
    return str(doc.body.get("metadata", {}).get("namespace") or namespace) if doc.info.namespaced else ""


async def apply_one(client: ApiClient, doc: Document, *, namespace: str, dry_run: bool = False) -> str:
    """Create or update one document; the verb that says what happened."""
    info = doc.info
    ns = doc_namespace(doc, namespace)
    params = {"dryRun": "All"} if dry_run else None
    try:
        await client.request("POST", object_path(info, ns), body=doc.body, params=params)
        return "created"
    except AlreadyExists:
        pass

    async def configure() -> str:
        current = msgspec.json.decode(await client.request("GET", object_path(info, ns, doc.name)))
        new = desired_update(current, doc.body, info)
        if unchanged(current, new, info):
            return "unchanged"
        await client.request("PUT", object_path(info, ns, doc.name), body=new, params=params)
        return "configured"

    return await retry_on_conflict(configure, attempts=2, what=f"{info.kind.lower()} {doc.name!r}")


def _read(file: str, stdin: TextIO) -> tuple[str, str]:
    if file == "-":
        return stdin.read(), "standard input"
    try:
        with open(file, encoding="utf-8") as f:
            return f.read(), file
    except OSError as e:
        raise CorralError(f"cannot read {file}: {e.strerror or e}") from None


@click.command()
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
              help="A YAML or JSON file of one or more objects (--- between YAML documents); - reads stdin.")
@click.option("-n", "--namespace", default="default", show_default=True,
              help="The namespace for objects whose metadata names none.")
@click.option("--dry-run", "dry_run", type=click.Choice(["none", "server"]), default="none", show_default=True,
              help="server: the server checks every write as for real and stores nothing.")
@click.option("--wait", is_flag=True, help="Wait until what was applied is ready (deployments rolled out, "
                                           "containers Running); exit 1 if one fails.")
@click.option("--timeout", type=float, default=300, show_default=True, metavar="SECONDS",
              help="With --wait: give up (exit 1) after this long.")
@connection_options
@api_command
async def apply(client: ApiClient, *, files: tuple[str, ...], namespace: str, dry_run: str, wait: bool,
                timeout: float) -> int:
    """Create the objects in FILE, or update the ones that exist to match it."""
    docs = read_documents(files)
    failed = 0
    applied: list[Document] = []
    suffix = " (server dry run)" if dry_run == "server" else ""
    for doc in docs:
        what = output.ref(doc.info, doc.name or "?")
        try:
            verb = await apply_one(client, doc, namespace=namespace, dry_run=dry_run == "server")
        except Unavailable:
            raise  # the API cannot be reached: the other documents would fail the same way
        except CorralError as e:
            output.print_error(e, what=what)
            failed += 1
            continue
        applied.append(doc)
        click.echo(f"{what} {verb}{suffix}")
    if wait and dry_run == "none" and not failed:
        from corral.cli.waiting import wait_ready

        return await wait_ready(client, [(d.info, doc_namespace(d, namespace), d.name) for d in applied],
                                timeout=timeout)
    return 1 if failed else 0


def read_documents(files: tuple[str, ...]) -> list[Document]:
    docs: list[Document] = []
    for file in files:
        text, source = _read(file, sys.stdin)
        docs += load_documents(text, source)
    if not docs:
        raise CorralError(f"no objects found in {', '.join(files)}")
    return docs
