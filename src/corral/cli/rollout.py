"""``corral rollout status|history|undo|pause|resume|restart DEPLOYMENT``: watch and steer a rollout.

- ``status`` follows the Deployment (a watch, resumed when cut) and prints each change of the
  rollout's state, as ``kubectl rollout status`` does; it exits 0 when every replica is updated and
  available, 1 when the rollout exceeded its progress deadline (Progressing=False,
  ProgressDeadlineExceeded), is paused half-way, the Deployment is deleted, or ``--timeout`` passed.
- ``history`` lists the revisions kept in the Deployment's annotations (``controllers.rollout``).
- ``undo`` sets ``spec.template`` back to a recorded revision (the previous one by default); the
  controller records it as a new revision, so numbers only grow.
- ``pause``/``resume`` set ``spec.paused``; ``restart`` stamps the template so every container is
  replaced within the rollout's bounds.

Every change is a read-modify-write of the Deployment retried on a conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import click
import msgspec

from corral.api import retrying
from corral.api.client import ApiClient
from corral.cli import output, styling
from corral.cli.connection import api_command, connection_options
from corral.controllers import rollout as revisions
from corral.model.errors import Gone, NotFound, Unavailable
from corral.model.kinds import DEPLOYMENTS
from corral.model.lifecycle import now_rfc3339
from corral.model.resources import Deployment

RESTARTED_AT = "corral.io/restartedAt"


def deployment_name(text: str) -> str:
    """``web`` or ``deployment/web`` (``deploy/web``, ``deployments/web``)."""
    kind, sep, name = text.partition("/")
    if not sep:
        return text
    info = output.kind_info(kind)
    if info is not DEPLOYMENTS:
        raise click.BadParameter(f"{text!r} is not a deployment", param_hint="NAME")
    return name


async def modify(client: ApiClient, name: str, namespace: str, change: Callable[[Deployment], str | None],
                 *, attempts: int = 5) -> tuple[Deployment, str | None]:
    """GET, ``change`` (returns a reason not to write, or None), PUT; again on a conflict
    (``api/retrying.py``)."""
    skipped: list[str] = []

    def mutate(d: Deployment) -> Deployment | None:
        skipped.clear()
        skip = change(d)
        if skip is not None:
            skipped.append(skip)
            return None
        return d

    d = await retrying.update(client, Deployment, name, mutate, namespace=namespace, attempts=attempts)
    return d, (skipped[0] if skipped else None)


def rollout_state(d: Deployment) -> tuple[bool | None, str]:
    """(True: done, False: failed, None: still going; a sentence), as ``kubectl rollout status`` words it."""
    name, spec, st = d.metadata.name, d.spec, d.status
    if st.observed_generation < d.metadata.generation:
        return None, "Waiting for deployment spec update to be observed..."
    progressing = next((c for c in st.conditions if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        return False, f'deployment "{name}" exceeded its progress deadline'
    if st.updated_replicas < spec.replicas:
        state: tuple[bool | None, str] = (None, f'Waiting for deployment "{name}" rollout to finish: '
                                                f"{st.updated_replicas} out of {spec.replicas} new replicas have been updated...")
    elif st.replicas > st.updated_replicas:
        state = (None, f'Waiting for deployment "{name}" rollout to finish: '
                       f"{st.replicas - st.updated_replicas} old replicas are pending termination...")
    elif st.available_replicas < st.updated_replicas:
        state = (None, f'Waiting for deployment "{name}" rollout to finish: '
                       f"{st.available_replicas} of {st.updated_replicas} updated replicas are available...")
    else:
        return True, f'deployment "{name}" successfully rolled out'
    if spec.paused:
        return False, f'deployment "{name}" is paused; `corral rollout resume {name}` to continue'
    return state


@click.group()
def rollout() -> None:
    """Watch and steer the rollout of a deployment."""


def _common(f: Callable[..., object]) -> Callable[..., object]:
    f = click.option("-n", "--namespace", default="default", show_default=True, help="The deployment's namespace.")(f)
    return click.argument("name")(f)


@rollout.command()
@_common
@click.option("--timeout", type=float, default=0, metavar="SECONDS", help="Give up after this long (0: no limit).")
@click.option("-w", "--watch/--no-watch", default=True, show_default=True, help="Wait for the rollout to end.")
@connection_options
@api_command
async def status(client: ApiClient, *, name: str, namespace: str, timeout: float, watch: bool) -> int:
    """Wait for a rollout to finish; exit 1 if it fails, stalls past its deadline, or times out."""
    name = deployment_name(name)
    last = ""

    def show(d: Deployment) -> bool | None:
        nonlocal last
        done, message = rollout_state(d)
        if message != last:
            click.echo(message, err=done is False)
            last = message
        return done

    async def follow() -> bool | None:
        while True:
            d = await client.get(Deployment, name, namespace=namespace)
            if (done := show(d)) is not None or not watch:
                return done
            try:
                async for ev in client.watch(Deployment, namespace=namespace,
                                             resource_version=d.metadata.resource_version,
                                             field_selector=f"metadata.name={name}"):
                    if ev.type == "DELETED":
                        raise NotFound(f'deployment "{name}" was deleted')
                    if (done := show(ev.object)) is not None:
                        return done
            except (Unavailable, Gone):
                await asyncio.sleep(1.0)  # cut or too old: read it again, then watch on

    try:
        async with contextlib.AsyncExitStack() as stack:
            if timeout > 0:
                await stack.enter_async_context(asyncio.timeout(timeout))
            done = await follow()
    except TimeoutError:
        click.echo(f'error: timed out after {timeout:g}s waiting for deployment "{name}" to roll out', err=True)
        return 1
    return 0 if done else (1 if done is False else 2)


@rollout.command()
@_common
@click.option("--revision", type=int, default=0, help="Show this revision's template in full.")
@connection_options
@api_command
async def history(client: ApiClient, *, name: str, namespace: str, revision: int) -> int:
    """List the recorded revisions of a deployment."""
    name = deployment_name(name)
    d = await client.get(Deployment, name, namespace=namespace)
    entries = revisions.read_history(d.metadata.annotations)
    if revision:
        entry = next((e for e in entries if e.revision == revision), None)
        if entry is None:
            raise NotFound(f'deployment "{name}" has no revision {revision}; '
                           f"it has {', '.join(str(e.revision) for e in entries) or 'none'}")
        click.echo(output.dump(msgspec.to_builtins(entry.template), "yaml"))
        return 0
    click.echo(f"deployment.corral/{name}")
    rows = []
    for e in entries:
        s = e.template.spec
        current = " (current)" if e is entries[-1] else ""
        rows.append([f"{e.revision}{current}", e.hash, s.image, " ".join([*s.command, *s.args]) or "<image default>"])
    color = styling.color_enabled()
    styling.echo(styling.render(["REVISION", "HASH", "IMAGE", "COMMAND"], rows, color=color), color=color)
    return 0


@rollout.command()
@_common
@click.option("--to-revision", type=int, default=0, help="The revision to return to (default: the previous one).")
@connection_options
@api_command
async def undo(client: ApiClient, *, name: str, namespace: str, to_revision: int) -> int:
    """Return a deployment's template to a previous revision."""
    name = deployment_name(name)
    chosen: list[int] = []

    def change(d: Deployment) -> str | None:
        entries = revisions.read_history(d.metadata.annotations)
        target = revisions.undo_target(entries, to_revision)
        if target is None:
            have = ", ".join(str(e.revision) for e in entries) or "none"
            raise NotFound(f'deployment "{name}" has no revision {to_revision or "before the current one"} '
                           f"(recorded: {have})")
        if revisions.template_hash(d.spec.template) == target.hash:
            return f"skipped rollback: deployment \"{name}\" already has revision {target.revision}'s template"
        d.spec.template = target.template
        chosen[:] = [target.revision]
        return None

    _, skipped = await modify(client, name, namespace, change)
    if skipped:
        click.echo(skipped)
    else:
        click.echo(f"deployment.corral/{name} rolled back to revision {chosen[0]}")
    return 0


async def _set_paused(client: ApiClient, name: str, namespace: str, paused: bool) -> int:
    name = deployment_name(name)

    def change(d: Deployment) -> str | None:
        if d.spec.paused == paused:
            return f"deployment.corral/{name} is already {'paused' if paused else 'resumed'}"
        d.spec.paused = paused
        return None

    _, skipped = await modify(client, name, namespace, change)
    click.echo(skipped or f"deployment.corral/{name} {'paused' if paused else 'resumed'}")
    return 0


@rollout.command()
@_common
@connection_options
@api_command
async def pause(client: ApiClient, *, name: str, namespace: str) -> int:
    """Stop a deployment's rollout where it is (scaling still applies)."""
    return await _set_paused(client, name, namespace, True)


@rollout.command()
@_common
@connection_options
@api_command
async def resume(client: ApiClient, *, name: str, namespace: str) -> int:
    """Let a paused deployment's rollout go on."""
    return await _set_paused(client, name, namespace, False)


@rollout.command()
@_common
@connection_options
@api_command
async def restart(client: ApiClient, *, name: str, namespace: str) -> int:
    """Replace every container of a deployment, within its rollout bounds."""
    name = deployment_name(name)

    def change(d: Deployment) -> str | None:
        d.spec.template.metadata.annotations[RESTARTED_AT] = now_rfc3339()
        return None

    await modify(client, name, namespace, change)
    click.echo(f"deployment.corral/{name} restarted")
    return 0
