"""The dashboard at scale: first paint and time to a visible change, with many containers on hollow nodes.

A control plane (``corral serve --role=control``) and ``corral sim`` with N hollow nodes run as
processes (bench_scale.py's way); N x per containers are created and Running. Then Debian's
chromium (Playwright) signs in to ``/ui/`` and measures, each ``--trials`` times:

- first paint: from navigation to the containers page's first row on screen (the page lists 50 a
  page from the API: it never holds 30,000 rows);
- a change visible: a container on the visible page deleted through the API → its row gone; and a
  container created under a label filter → its row shown;
- a scrape of the API's /metrics (the goal: ≤ 50 ms), with the same load.

The floor beside first paint is the API's own list of the first page (the request the page makes).

    .venv/bin/python benchmarks/bench_ui.py --nodes 1000 --per-node 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_scale import NS, Child, SimStats, burst
from harness import pct, trust, wait_ready
from playwright.async_api import async_playwright

from corral.api.client import ApiClient
from corral.model.resources import Container, ContainerSpec, Namespace, ObjectMeta
from corral.store.embedded import free_port

RESULTS = Path(__file__).parent / "results" / "bench_ui.json"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values) * 1000, 1), "max_ms": round(max(values) * 1000, 1),
            "p90_ms": round(pct(values, 0.9) * 1000, 1)}


async def measure(url: str, token: str, api: ApiClient, trials: int) -> dict[str, Any]:
    paints, deletes, creates, lists, scrapes = [], [], [], [], []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = await browser.new_context(viewport={"width": 1366, "height": 768}, ignore_https_errors=True)
        page = await context.new_page()
        await page.goto(url + "/ui/")
        await page.get_by_label("Token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("navigation", name="Sections").wait_for()
        for i in range(trials):
            t0 = time.monotonic()
            await page.goto(f"{url}/ui/#/containers?ns={NS}&t={i}")
            await page.reload()
            await page.locator("tbody tr").first.wait_for()
            paints.append(time.monotonic() - t0)

            t0 = time.monotonic()
            await api.request("GET", f"/namespaces/{NS}/containers", params={"limit": "50"})
            lists.append(time.monotonic() - t0)

            victim = await page.locator("tbody tr").nth(1).get_attribute("data-key")
            assert victim is not None
            row = page.locator(f'tbody tr[data-key="{victim}"]')
            t0 = time.monotonic()
            await api.delete(Container, victim.split("/", 1)[1], namespace=NS, grace_period=0)
            await row.wait_for(state="detached")
            deletes.append(time.monotonic() - t0)

            label = f"uibench{i}"
            await page.goto(f"{url}/ui/#/containers?ns={NS}&l=app%3D{label}")
            await page.get_by_role("status").filter(has_text="0 shown").wait_for()
            t0 = time.monotonic()
            await api.create(Container(metadata=ObjectMeta(name=f"ui-new-{i}", namespace=NS, labels={"app": label}),
                                       spec=ContainerSpec(image="127.0.0.1:5000/busybox:1", command=["sleep", "1"])))
            await page.locator(f'tbody tr[data-key="{NS}/ui-new-{i}"]').wait_for()
            creates.append(time.monotonic() - t0)

            t0 = time.monotonic()
            await api.request("GET", "/metrics")
            scrapes.append(time.monotonic() - t0)
        await browser.close()
    return {"first_paint": summary(paints), "first_page_list_floor": summary(lists),
            "delete_visible": summary(deletes), "create_visible": summary(creates), "metrics_scrape": summary(scrapes)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": str(base / "xdg")}
    control = Child("control", ["serve", "--role=control", "--data-dir", str(base / "control"),
                                "--listen", f"127.0.0.1:{port}"], env=env, log=base / "control.log")
    total = args.nodes * args.per_node
    result: dict[str, Any] = {"nodes": args.nodes, "containers": total}
    sim: Child | None = None
    try:
        await control.start()
        await wait_ready(url, data_dir=base / "control")
        admin = (base / "control" / "admin.token").read_text().strip()
        join = (base / "control" / "join.token").read_text().strip()
        sim = Child("sim", ["sim", "--server", url, "--token", join, "--nodes", str(args.nodes), "--start-delay",
                            "50ms", "--report-every", "1s", "--max-containers", str(max(110, args.per_node * 3))],
                    env=env, log=base / "sim.log")
        await sim.start(stdout_pipe=True)
        assert sim.proc is not None
        stats = SimStats(sim.proc)
        follower = asyncio.create_task(stats.follow())
        await asyncio.wait_for(stats.ready.wait(), 600)
        async with ApiClient(url, admin, timeout=60, ssl_context=trust(base / "control")) as api:
            await api.create(Namespace(metadata=ObjectMeta(name=NS)))
            result["burst"] = await burst(api, total, 64, 600)
            print("burst:", result["burst"], flush=True)
            result.update(await measure(url, admin, api, args.trials))
        follower.cancel()
    finally:
        if sim is not None:
            await sim.stop()
        await control.stop()
        shutil.rmtree(base, ignore_errors=True)
    for k in ("first_paint", "first_page_list_floor", "delete_visible", "create_visible", "metrics_scrape"):
        print(f"{k:>22}: {result[k]}")
    print("goals: first paint ≤ 1000 ms, a change visible ≤ 1000 ms, a scrape ≤ 50 ms")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--per-node", type=int, default=30)
    p.add_argument("--trials", type=int, default=10)
    a = p.parse_args()
    res = asyncio.run(main(a))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS}")
