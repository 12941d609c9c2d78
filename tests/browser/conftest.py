"""Web pages in real Chromium: Debian's ``chromium`` driven by Playwright for Python.

Playwright's own browser download is not reachable from here, so the browser is
the system's (``/usr/bin/chromium``, which ``make test`` installs as root when it
is missing), launched by path, headless, with a fresh profile in a temporary
directory, and with the flags this machine's closed network needs (without
``--disable-background-networking`` and friends Chromium keeps trying Google's
services and fails many connections at each start).

Fixtures and helpers:

- ``chromium`` (per session): the persistent browser context; launching costs
  about a second, so all browser tests share it. ``page`` (per test): a new tab,
  with the context's cookies cleared first, so no test inherits a sign-in.
- :func:`assert_accessible`: injects npm's ``axe-core`` (``tests/node_modules``)
  into the page and fails listing every WCAG 2.2 A/AA violation.
- ``screenshots`` (per test): :meth:`Screenshots.take` saves a full-page PNG per
  step as ``tests/screenshots/<module>/<test>/NN-step.png`` (ignored by git) for
  a person to look at.

Without Chromium the tests here skip, except under CI (``CI`` set), where a
missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

TESTS = Path(__file__).resolve().parent.parent
AXE_SOURCE = TESTS / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = TESTS / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# WCAG 2.0, 2.1 and 2.2 at levels A and AA, as axe-core tags its rules.
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}: `make test` installs Debian's as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="cpis-chromium-")
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1024, "height": 768},
                locale="en-GB",
            )
            context.set_default_timeout(10_000)
            try:
                yield context
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def page(chromium: BrowserContext) -> AsyncIterator[Page]:
    await chromium.clear_cookies()
    tab = await chromium.new_page()
    try:
        yield tab
    finally:
        await tab.close()


@cache
def _axe_source() -> str:
    if not AXE_SOURCE.exists():
        raise RuntimeError(f"axe-core missing at {AXE_SOURCE}: run `cd tests && npm ci`")
    return AXE_SOURCE.read_text(encoding="utf-8")


async def assert_accessible(page: Page, *, tags: list[str] = WCAG_22_AA) -> dict[str, Any]:
    """Run axe-core on the page as it is now; fail on any violation of ``tags``.

    axe is evaluated through the DevTools protocol rather than added as a
    ``<script>``, so a page's Content-Security-Policy (which rightly forbids
    inline scripts) neither blocks it nor has to be bypassed.
    """
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(_axe_source())
    results: dict[str, Any] = await page.evaluate(
        """async (tags) => await axe.run(document, {
            runOnly: {type: 'tag', values: tags},
            resultTypes: ['violations'],
        })""",
        tags,
    )
    violations = results["violations"]
    assert not violations, f"axe-core found on {page.url}:\n" + "\n".join(
        _describe(v) for v in violations
    )
    return results


def _describe(violation: dict[str, Any]) -> str:
    nodes = "\n".join(
        f"    {json.dumps(node['target'])}: {node.get('failureSummary', '')}".replace("\n", " ")
        for node in violation["nodes"]
    )
    return (
        f"  {violation['id']} ({violation['impact']}): {violation['help']}"
        f" [{violation['helpUrl']}]\n{nodes}"
    )


class Screenshots:
    """Numbered full-page screenshots of one test's steps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []

    async def take(self, page: Page, step: str) -> Path:
        name = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Iterator[Screenshots]:
    module = Path(request.node.path).stem
    test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    folder = SCREENSHOTS / module / test
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    yield Screenshots(folder)
