"""A trained run in the real app (Playwright on Debian's Chromium): opened by ``--checkpoint`` and by
``$AUDIOCNN_CHECKPOINT``, a bad file typed in the sidebar refused with the run still served, the
shipped model picked in the sidebar, and two runs compared on the Compare page (CKA map drawn).
Screenshots go to ``test-output/`` (``models-*.png``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import audio_bytes
from test_browser import CHROMIUM, STEP_TIMEOUT_MS, VIEWPORT, chromium, running_app, screenshot, wait_idle

from audiocnn.audio import load_audio
from audiocnn.checkpoint import DEFAULT_CHECKPOINT
from audiocnn.inference import Predictor
from audiocnn.labels import class_info
from audiocnn.samples import list_samples

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]


@pytest.fixture(scope="module", params=["flag", "env"])
def server(request, trained_run: Path):
    """``streamlit run app.py`` serving the tiny trained run, chosen by flag or by environment variable."""
    env = {**os.environ, "AUDIOCNN_RUNS_DIR": str(trained_run.parent.parent)}
    app_args = ["--checkpoint", str(trained_run)] if request.param == "flag" else None
    if request.param == "env":
        env["AUDIOCNN_CHECKPOINT"] = str(trained_run)
    with running_app(f"streamlit-models-{request.param}.log", app_args, env) as url:
        yield request.param, url


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """One second of a bundled clip: the tiny run's whole window, so every model ranks the whole clip."""
    waveform = load_audio(list_samples()[0].path, 22050)
    path = tmp_path_factory.mktemp("clip") / "dog-1s.wav"
    path.write_bytes(audio_bytes(waveform[:22050, None], 22050, "WAV", "FLOAT"))
    return path


@pytest.fixture(scope="module")
def browser_page():
    with chromium() as browser:
        yield browser.new_context(viewport=VIEWPORT)


def expected_first(path: Path, clip: Path) -> str:
    model = Predictor.from_checkpoint(path)
    top = class_info(model.predict(load_audio(clip, model.feature_config.sample_rate)).top_label)
    return f"1. {top.emoji} {top.display_name}"


def first_prediction(page) -> str:
    first = page.locator("strong", has_text=re.compile(r"^1\. ")).first
    first.wait_for()
    return first.inner_text().strip()


def test_a_trained_run_is_served_picked_and_compared(server, browser_page, trained_run, short_clip):
    how, url = server
    page = browser_page.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url)
    page.get_by_text("What does the CNN hear?").wait_for()
    wait_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("2-stage CNN 8–16 ch").first.wait_for()  # the picker shows the served run's record
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(short_clip))
    wait_idle(page)
    assert first_prediction(page) == expected_first(trained_run, short_clip)
    assert expected_first(trained_run, short_clip) != expected_first(DEFAULT_CHECKPOINT, short_clip)
    if how == "env":
        return  # the sidebar and Compare are driven once, on the flag's server

    box = page.get_by_label("Or open a checkpoint file")
    box.fill(str(trained_run.with_name("missing.pt")))
    box.press("Enter")
    page.get_by_text("The model served before stays").first.wait_for()
    wait_idle(page)
    assert first_prediction(page) == expected_first(trained_run, short_clip)

    sidebar.get_by_role("combobox", name="Model").click()
    page.get_by_role("option", name=re.compile(r"^shipped model")).click()
    wait_idle(page)
    page.locator("strong", has_text=expected_first(DEFAULT_CHECKPOINT, short_clip)).first.wait_for()
    assert first_prediction(page) == expected_first(DEFAULT_CHECKPOINT, short_clip)
    assert page.locator('[data-testid="stException"]').count() == 0

    sidebar.get_by_role("combobox", name="Model").click()  # back to the run: A = best.pt, B = last.pt
    page.get_by_role("option", name=f"{trained_run} · ").click()
    wait_idle(page)
    page.get_by_role("link", name="Compare").first.click()
    page.get_by_text("Two models").first.wait_for()
    wait_idle(page)
    picker = page.get_by_placeholder("Choose a second model")
    picker.click()
    page.keyboard.type(str(trained_run.with_name("last.pt")))  # type to filter: the only match is highlighted
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name=re.compile("^Compare the two models")).click()
    page.get_by_text("Linear CKA (Kornblith et al. 2019)").wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator(".js-plotly-plot", has_text="model B stage").count() == 1
    screenshot(page, "models-compare")
    page.close()
