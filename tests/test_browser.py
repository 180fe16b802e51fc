"""End to end in a real browser: ``streamlit run app.py`` driven by Playwright on Debian's Chromium.

Uploads a bundled clip through the real file uploader, waits for the ranked
predictions, checks the top class against the library, opens the Layers page and
moves through the tree. Screenshots of the four pages and the measured latencies
(upload -> predictions visible, layer-node switches) go to ``test-output/``; the
timings are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from audiocnn.audio import load_audio
from audiocnn.inference import Predictor
from audiocnn.labels import class_info
from audiocnn.samples import list_samples

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = ROOT / "test-output"
START_TIMEOUT = 120  # seconds for the server to answer its health check
STEP_TIMEOUT_MS = 180_000  # one page render on a busy 2-core machine, model load included

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(log_name: str, app_args: list[str] | None = None, env: dict[str, str] | None = None):
    """A headless ``streamlit run app.py [-- app_args]`` on a free local port; yields its URL, stops it after."""
    OUTPUT.mkdir(exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
               str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    if app_args:
        command += ["--", *app_args]
    log = (OUTPUT / log_name).open("w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"streamlit did not start; see {OUTPUT / log_name}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def server():
    """The app as a user starts it, on a free local port, stopped after the module."""
    with running_app("streamlit.log") as url:
        yield url


VIEWPORT = {"width": 1440, "height": 1000}


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, with the flags a sandboxed CI machine needs; closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser_page():
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(STEP_TIMEOUT_MS)
        yield page


def wait_idle(page) -> None:
    """Until the script run finished (Streamlit shows its running indicator while a script runs)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !/Running|Connecting/.test(document.querySelector('[data-testid=\"stStatusWidget\"]').innerText)",
        timeout=STEP_TIMEOUT_MS,
    )


def screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls an inner container, so the viewport grows to its height first."""
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
    height = page.evaluate(
        "() => { const b = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
        " return b.getBoundingClientRect().top + b.scrollHeight; }"
    )
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(1500)  # let Plotly re-lay out at the new size
    page.screenshot(path=str(OUTPUT / f"{name}.png"))
    page.set_viewport_size(size)


def test_upload_predict_and_browse_layers(server, browser_page):
    page = browser_page
    sample = list_samples()[0]
    predictor = Predictor.from_checkpoint()
    waveform = load_audio(sample.path, predictor.feature_config.sample_rate)
    analysis = predictor.analyze(waveform)
    top = class_info(analysis.prediction.top_label)
    timings: dict[str, object] = {}

    page.goto(server)
    page.get_by_text("What does the CNN hear?").wait_for()
    wait_idle(page)

    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
    started = time.perf_counter()
    uploader.set_input_files(str(sample.path))
    first = page.locator("strong", has_text=re.compile(r"^1\. ")).first
    first.wait_for()
    timings["upload_to_predictions_s"] = round(time.perf_counter() - started, 2)
    assert first.inner_text().strip() == f"1. {top.emoji} {top.display_name}"
    page.locator(".js-plotly-plot").nth(2).wait_for()  # waveform, spectrogram and Grad-CAM drawn
    wait_idle(page)
    timings["upload_to_page_complete_s"] = round(time.perf_counter() - started, 2)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "analyze")

    page.get_by_role("link", name="Layers").first.click()
    page.get_by_text("Shape (channels × freq × time)").wait_for()
    page.locator(".js-plotly-plot").nth(2).wait_for()
    wait_idle(page)
    switches = []
    for stage in ("layer3", "layer4", "stem", "layer2", "layer1"):
        node = "stem.conv" if stage == "stem" else f"{stage}.block0.relu1"
        shape = " × ".join(map(str, analysis.activations[node].shape))
        started = time.perf_counter()
        page.locator('[data-testid="stRadio"]').first.get_by_text(stage, exact=True).click()
        page.locator('[data-testid="stMetricValue"]', has_text=shape).first.wait_for()
        switches.append(round(time.perf_counter() - started, 2))
        wait_idle(page)
    timings["layer_switch_s"] = switches
    page.get_by_role("button", name=re.compile("^Find them")).click()
    page.locator("audio").nth(4).wait_for()  # five clips that excite the channel, each with a player
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "layers")

    for name, marker in (("Compare", "Where the representations diverge"), ("Model", "Architecture")):
        page.get_by_role("link", name=name).first.click()
        page.get_by_text(marker).first.wait_for()
        page.locator(".js-plotly-plot").nth(1).wait_for()
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, name.lower())

    (OUTPUT / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"browser timings: {timings}")


PLAY_AND_MEASURE = """async (audio) => {
    audio.muted = true;  // muted playback needs no user gesture; the element must still really play
    const within = (promise, ms, what) => Promise.race([promise, new Promise((_, reject) =>
        setTimeout(() => reject(new Error(what + ' took over ' + ms + ' ms')), ms))]);
    let error = null;
    try { await within(audio.play(), 20000, 'play()'); } catch (e) { error = String(e); }
    await new Promise(resolve => setTimeout(resolve, 1000));
    const played = audio.currentTime > 0;
    audio.pause();
    const data = await within(fetch(audio.currentSrc).then(r => r.arrayBuffer()), 20000, 'fetching the audio');
    const decoded = await new OfflineAudioContext(1, 1, 22050).decodeAudioData(data);
    let peak = 0;
    for (const x of decoded.getChannelData(0)) peak = Math.max(peak, Math.abs(x));
    return {played, error, peak, seconds: decoded.duration};
}"""


def test_listen_to_what_the_model_heard_and_ignored(server, browser_page):
    """Both resynthesised parts of the explanation play in the real browser and carry sound."""
    page = browser_page
    sample = next(s for s in list_samples() if s.label == "dog")
    page.goto(server)
    page.get_by_text("What does the CNN hear?").wait_for()
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(sample.path))
    page.get_by_text("Listen to the explanation").wait_for()
    page.get_by_text("What it ignored").wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    players = page.locator("audio")
    after = page.evaluate(  # the players that follow the "What the model listened to" heading (others come later)
        "() => { const marker = [...document.querySelectorAll('p')].find(p => p.innerText.startsWith("
        "'What the model listened to')); return [...document.querySelectorAll('audio')].flatMap((a, i) => "
        "marker.compareDocumentPosition(a) & Node.DOCUMENT_POSITION_FOLLOWING ? [i] : []); }"
    )
    assert len(after) >= 2
    results = {}
    for name, index in (("listened", after[0]), ("ignored", after[1])):
        results[name] = players.nth(index).evaluate(PLAY_AND_MEASURE)
    for name, result in results.items():
        assert result["played"], name
        assert result["peak"] > 1e-3, (name, result)  # not silent
        assert abs(result["seconds"] - 5.0) < 0.05, (name, result)
    screenshot(page, "analyze_explanation")
    print(f"listening in the browser: {results}")


def progress_done(page) -> int:
    """Windows done in the scan's progress text (``Scanning the recording: 12 / 150 windows``)."""
    text = page.get_by_text(re.compile(r"Scanning the recording: \d+ / 150 windows")).first.inner_text()
    return int(re.search(r"(\d+) / 150", text).group(1))


def test_a_long_scan_shows_progress_stops_and_survives_leaving_the_page(server, browser_page, tmp_path):
    import numpy as np
    import soundfile as sf

    page = browser_page
    rate = 22050
    rng = np.random.default_rng(0)
    minutes = (0.1 * rng.standard_normal(600 * rate)).astype(np.float32)  # 10 minutes: 150 windows
    minutes[::7] += 0.3  # a click train, so the clip is not only noise
    path = tmp_path / "ten_minutes.wav"
    sf.write(path, minutes, rate, subtype="PCM_16")

    page.goto(server)
    page.get_by_text("What does the CNN hear?").wait_for()
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(path))
    page.get_by_text(re.compile(r"Scanning the recording: [1-9]\d* / 150 windows")).first.wait_for()
    before_leaving = progress_done(page)
    screenshot(page, "analyze_scanning")

    page.get_by_role("link", name="Model").first.click()  # leave mid-scan
    page.get_by_text("Architecture").first.wait_for()
    page.get_by_role("link", name="Analyze").first.click()
    page.get_by_text(re.compile(r"Scanning the recording: \d+ / 150 windows|150 overlapping")).first.wait_for()
    if page.get_by_text("150 overlapping").count():  # a fast machine finished the rest in one go
        pytest.skip("the scan finished before it could be stopped (only the resume after leaving was seen)")
    assert progress_done(page) >= before_leaving  # resumed, not started again

    page.get_by_role("button", name=re.compile("Stop the scan")).click()
    stopped = page.get_by_text(re.compile(r"Scan stopped after \d+ of 150 windows")).first
    stopped.wait_for()
    wait_idle(page)
    done = int(re.search(r"after (\d+) of", stopped.inner_text()).group(1))
    assert 0 < done < 150
    assert page.locator('[data-testid="stException"]').count() == 0
    page.get_by_role("button", name="Resume the scan").click()
    page.get_by_text("150 overlapping 5-second windows").first.wait_for()
    page.locator(".js-plotly-plot").nth(2).wait_for()  # timeline, waveform and spectrogram drawn
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "analyze_timeline")
