"""The accessibility check itself: it must fail a page that breaks WCAG, or its
passes on the real pages mean nothing."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from tests.browser.conftest import assert_accessible


async def test_a_page_with_violations_fails_naming_each(page: Page) -> None:
    await page.set_content(
        "<html><head><title>t</title></head><body><main>"
        "<input type='text'><p style='color:#aaa'>faint</p></main></body></html>"
    )
    with pytest.raises(AssertionError) as failed:
        await assert_accessible(page)
    message = str(failed.value)
    for rule in ("html-has-lang", "label", "color-contrast"):
        assert f"{rule} (" in message


async def test_a_plain_accessible_page_passes(page: Page) -> None:
    await page.set_content(
        "<html lang='en'><head><title>t</title></head><body><main><h1>Fine</h1>"
        "<label for='n'>Name</label><input id='n' type='text'></main></body></html>"
    )
    results = await assert_accessible(page)
    assert results["testEngine"]["name"] == "axe-core"
