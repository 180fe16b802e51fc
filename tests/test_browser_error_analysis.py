"""Error analysis by example in a real browser: click a confusion-matrix cell, hear one of its clips,
send it to Analyze, then see it on the embedding map with its neighbours. Screenshots go to
``test-output/`` (``model-confusions.png``, ``analyze-from-cell.png``, ``map.png``)."""

from __future__ import annotations

import json
import re

import pytest
from test_browser import CHROMIUM, OUTPUT, browser_page, screenshot, server, wait_idle  # noqa: F401

from audiocnn.labels import CLASS_NAMES
from ui import confusions
from ui.plots import class_label
from ui.resources import METRICS_PATH

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]

CELL_CENTRE = """([row, col]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.data.some(t => t.type === 'heatmap'));
  gd.scrollIntoView({block: 'center'});
  const box = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return [box.left + xa._offset + xa.l2p(col), box.top + ya._offset + ya.l2p(row)];
}"""


def test_click_a_cell_hear_it_send_it_to_analyze_and_find_it_on_the_map(server, browser_page):  # noqa: F811
    page = browser_page
    metrics = json.loads(METRICS_PATH.read_text(encoding="utf-8"))
    clips = confusions.records(metrics)
    true, predicted, count = confusions.confused_pairs(confusions.records_confusion(clips, 50), range(50))[1]
    listed = confusions.cell(clips, true, predicted)
    page.set_viewport_size({"width": 1440, "height": 1400})
    page.goto(server)
    page.get_by_text("What does the CNN hear?").wait_for()
    wait_idle(page)
    page.get_by_role("link", name="Model").first.click()
    page.get_by_text("Confusion matrix").first.wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for()
    wait_idle(page)

    page.wait_for_timeout(1000)  # Plotly lays the matrix out
    x, y = page.evaluate(CELL_CENTRE, [true, predicted])
    page.mouse.click(x, y)  # the second most-confused pair; the first is shown by default
    heading = f"{count} clips of {class_label(CLASS_NAMES[true])} taken for {class_label(CLASS_NAMES[predicted])}"
    page.get_by_text(heading).wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.get_by_text(listed[0].name).first.wait_for()

    audio = page.locator("audio").first
    audio.wait_for(state="attached")
    played = audio.evaluate(
        "async a => { a.muted = true; await a.play(); await new Promise(r => setTimeout(r, 600)); a.pause();"
        " return [a.duration, a.currentTime]; }"
    )
    assert played[0] == pytest.approx(5.0, abs=0.1) and played[1] > 0  # a 5-second clip, and it played
    screenshot(page, "model-confusions")

    third = confusions.confused_pairs(confusions.records_confusion(clips, 50), range(50))[2]
    # the pairs table is the first table after its heading (the explanation and robustness tables follow it)
    table = page.get_by_text("Most-confused pairs").first.locator("xpath=following::*[@data-testid='stDataFrame'][1]")
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 * 3 + 17)  # the third row's selection box (row 35 px high)
    page.get_by_text(
        f"{third[2]} clips of {class_label(CLASS_NAMES[third[0]])} taken for {class_label(CLASS_NAMES[third[1]])}"
    ).wait_for()  # a most-confused pair opens its cell
    wait_idle(page)
    x, y = page.evaluate(CELL_CENTRE, [true, predicted])
    page.mouse.click(x, y)
    page.get_by_text(heading).wait_for()
    wait_idle(page)

    page.get_by_role("button", name="Analyze").first.click()
    page.get_by_text("What does the CNN hear?").wait_for()
    page.locator("h3", has_text=listed[0].name).first.wait_for()
    page.locator("strong", has_text=re.compile(r"^1\. ")).first.wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "analyze-from-cell")

    page.get_by_role("link", name="Map").first.click()
    page.get_by_text(f"The model hears {listed[0].name} as most like these").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    wait_idle(page)
    traces = page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => t.name)")
    assert "current clip" in traces
    assert page.locator("audio").count() >= 8  # each neighbour has a player
    assert page.get_by_text("similarity").count() >= 8
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "map")
