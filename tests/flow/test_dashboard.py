"""The web dashboard in a real browser (Debian's chromium driven by Playwright) against a real cluster.

Signs in (a wrong token first), sees a container created through the API appear and turn Running,
reads its logs, scales a deployment from its page, and saves a screenshot of each page under
``.artifacts/dashboard/`` (or ``$CORRAL_TEST_ARTIFACTS``). No page may log a console error.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    LabelSelector,
    ObjectMeta,
    TemplateMeta,
)
from tests.fixtures.cluster import Cluster, eventually
from tests.flow.test_deployments import delete_deployment, live_containers

CHROMIUM = "/usr/bin/chromium"
# as root, without a sandbox; no background traffic to hosts this machine cannot reach
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("CORRAL_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / ".artifacts")) / "dashboard"


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_a_user_signs_in_watches_a_container_run_reads_its_logs_and_scales_a_deployment(cluster: Cluster) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: run scripts/install-deps.sh (apt-get install chromium)"
    name, dep = f"ui-{uuid.uuid4().hex[:5]}", f"uid-{uuid.uuid4().hex[:5]}"
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = await browser.new_context(viewport={"width": 1366, "height": 768}, ignore_https_errors=True)
        page = await context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            await page.goto(cluster.plane.url + "/ui/")
            await page.get_by_label("Token").fill("not-a-token")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_contain_text("The token was refused")
            await shot(page, "signin-refused")
            errors.clear()  # the refused request is logged by the browser as a failed load: expected

            await page.get_by_label("Token").fill(cluster.plane.admin_token)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
            await expect(page.get_by_role("heading", name="Containers")).to_be_visible()

            created = time.monotonic()
            await cluster.api.create(Container(metadata=ObjectMeta(name=name), spec=ContainerSpec(
                image=cluster.image, command=["sh", "-c", "echo hello from the dashboard test; sleep 300"])))
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
            await expect(row).to_be_visible(timeout=5000)
            appeared = time.monotonic() - created
            assert appeared < 1.0, f"the new container took {appeared:.2f}s to appear"
            await expect(row.get_by_text("Running")).to_be_visible(timeout=30_000)
            await shot(page, "containers")

            await row.get_by_role("link", name=name, exact=True).click()
            await expect(page.get_by_label(f"Logs of {name}")).to_contain_text("hello from the dashboard test",
                                                                               timeout=15_000)
            await shot(page, "container")

            await page.get_by_role("link", name="Events", exact=True).click()
            await expect(page.get_by_role("heading", name="Events")).to_be_visible()
            await expect(page.get_by_role("row").filter(has_text=f"container/{name}").first).to_be_visible()
            await shot(page, "events")
            await page.get_by_role("link", name="Nodes", exact=True).click()
            node_row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="node-1", exact=True))
            await expect(node_row.get_by_text("Ready", exact=True)).to_be_visible()
            await expect(node_row.get_by_role("img", name="allocated").first).to_be_visible()
            await shot(page, "nodes")

            tmpl = ContainerTemplate(metadata=TemplateMeta(labels={"app": dep}),
                                     spec=ContainerSpec(image=cluster.image, command=["sleep", "300"]))
            await cluster.api.create(Deployment(metadata=ObjectMeta(name=dep), spec=DeploymentSpec(
                replicas=1, selector=LabelSelector(match_labels={"app": dep}), template=tmpl)))
            await page.get_by_role("link", name="Deployments", exact=True).click()
            await page.get_by_role("link", name=dep, exact=True).click()
            await page.get_by_label("Replicas").fill("3")
            await page.get_by_role("button", name="Scale").click()
            await expect(page.get_by_role("status").filter(has_text="Scaled to 3")).to_be_visible()

            async def three() -> None:
                assert len(await live_containers(cluster.api, dep)) == 3

            await eventually(three, timeout=30, what="the deployment follows the page's scale to 3")
            await shot(page, "deployment")
            assert errors == [], f"console errors: {errors}"
        finally:
            await browser.close()
            await delete_deployment(cluster, dep)
            await cluster.api.delete(Container, name)
