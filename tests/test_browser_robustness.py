"""In a real browser: the Analyze page's "How robust is this prediction?" panel draws its four curves."""

from __future__ import annotations

import re

from test_browser import browser_page, pytestmark, screenshot, server, wait_idle  # noqa: F401  (fixtures, marks)

from audiocnn.robustness import PANEL_FAMILIES
from audiocnn.samples import list_samples


def test_robustness_panel_draws_on_demand(server, browser_page):  # noqa: F811
    page = browser_page
    page.goto(server)
    page.get_by_text("What does the CNN hear?").wait_for()
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(list_samples()[0].path))
    page.locator("strong", has_text=re.compile(r"^1\. ")).first.wait_for()
    wait_idle(page)
    page.get_by_text("How robust is this prediction?").click()
    for family in PANEL_FAMILIES:  # each curve's subplot title is drawn
        page.locator(".js-plotly-plot text", has_text=family.title).first.wait_for()
    page.get_by_text("A flat curve means the prediction survives").wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    curves = page.locator(".js-plotly-plot .scatterlayer .trace").count()
    assert curves >= 2 * len(PANEL_FAMILIES)
    screenshot(page, "robustness")
