"""Load test: several browser sessions of the running app upload different clips at the same moment.

    .venv/bin/python scripts/load_test.py                  # starts its own server, 4 sessions
    .venv/bin/python scripts/load_test.py --sessions 6     # more sessions (at most 12)
    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:8501   # an app already running here

Each session is its own headless Chromium context (its own Streamlit websocket
session). All upload at once, each a different bundled sample chosen so their top
classes differ; every session must show the top class the library computes for its
clip. One more session uploads random bytes named ``noise.wav`` and must get the
refusal message while the others are served. Prints one line per session, the
throughput and the slowest session; exit status 0 only when every session passed.
Only localhost is ever contacted; the number of sessions and the total time are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audiocnn.audio import load_audio  # noqa: E402
from audiocnn.inference import Predictor  # noqa: E402
from audiocnn.labels import class_info  # noqa: E402
from audiocnn.samples import list_samples  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MAX_SESSIONS = 12
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
BAD_FILE_MESSAGE = "not an audio format"


@dataclass
class Job:
    """What one session uploads and what it must see."""

    name: str
    path: Path
    expect: str  # the first ranked line ("1. 🐕 Dog") or, for the bad file, part of the error


@dataclass
class Outcome:
    job: Job
    ok: bool
    shown: str
    page_ready_s: float = float("nan")  # page open -> uploader visible
    upload_to_result_s: float = float("nan")  # file set -> predictions (or error) visible


def choose_jobs(count: int, min_margin: float) -> list[Job]:
    """``count`` bundled clips whose top classes differ and are not near-ties, with the library's answer."""
    predictor = Predictor.from_checkpoint()
    jobs, seen = [], set()
    for sample in list_samples():
        probabilities = predictor.predict(load_audio(sample.path, predictor.feature_config.sample_rate)).probabilities
        order = probabilities.argsort()[::-1]
        top = predictor.class_names[order[0]]
        if top in seen or probabilities[order[0]] - probabilities[order[1]] < min_margin:
            continue
        seen.add(top)
        info = class_info(top)
        jobs.append(Job(sample.path.name, sample.path, f"1. {info.emoji} {info.display_name}"))
        if len(jobs) == count:
            return jobs
    raise SystemExit(f"only {len(jobs)} bundled clips have distinct, clear top classes; ask for fewer sessions")


class StartLine:
    """Releases every upload at once, when the last session has its page ready (or has failed)."""

    def __init__(self, sessions: int) -> None:
        self.waiting = sessions
        self.go = asyncio.Event()
        self.released_at = 0.0

    def arrive(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.released_at = time.perf_counter()
            self.go.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(log_path: Path, timeout: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return process, url
        except OSError:
            time.sleep(0.5)
    stop_server(process)
    raise SystemExit(f"the app did not start within {timeout:.0f} s; see {log_path}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


async def run_session(browser, url: str, job: Job, start: StartLine, timeout_ms: float, bad: bool) -> Outcome:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    arrived = False
    try:
        opened = time.perf_counter()
        await page.goto(url)
        uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
        await uploader.wait_for(state="attached")
        ready = time.perf_counter() - opened
        start.arrive()
        arrived = True
        await start.go.wait()
        began = time.perf_counter()
        await uploader.set_input_files(str(job.path))
        if bad:
            alert = page.locator('[data-testid="stAlert"]', has_text=job.path.name).first
            await alert.wait_for()
            shown = (await alert.inner_text()).strip()
            ok = job.expect in shown
        else:
            first = page.locator("strong", has_text=re.compile(r"^1\. ")).first
            await first.wait_for()
            shown = (await first.inner_text()).strip()
            ok = shown == job.expect
        elapsed = time.perf_counter() - began
        if await page.locator('[data-testid="stException"]').count():
            ok, shown = False, shown + " (and a traceback on the page)"
        return Outcome(job, ok, shown, ready, elapsed)
    except Exception as error:  # a timeout or a closed page is this session's failure, not the run's
        return Outcome(job, False, f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160]}")
    finally:
        if not arrived:
            start.arrive()  # never hold the others back
        await context.close()


async def run_all(url: str, jobs: list[Job], bad: Job | None, timeout_s: float) -> tuple[list[Outcome], float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            warm = await browser.new_page()  # the first visit loads the model: keep it out of the measurement
            await warm.goto(url)
            await warm.locator('[data-testid="stFileUploader"]').first.wait_for(timeout=timeout_s * 1000)
            await warm.close()
            sessions = [(job, False) for job in jobs] + ([(bad, True)] if bad is not None else [])
            start = StartLine(len(sessions))
            outcomes = await asyncio.gather(
                *(run_session(browser, url, job, start, timeout_s * 1000, is_bad) for job, is_bad in sessions)
            )
            return list(outcomes), time.perf_counter() - start.released_at
        finally:
            await browser.close()


def report(outcomes: list[Outcome], wall: float) -> bool:
    print(f"{'session':<24} {'ok':<4} {'page s':>7} {'result s':>9}  shown / expected")
    for outcome in outcomes:
        job = outcome.job
        print(f"{job.name:<24} {'yes' if outcome.ok else 'NO':<4} {outcome.page_ready_s:7.1f} "
              f"{outcome.upload_to_result_s:9.1f}  {outcome.shown!r} / {job.expect!r}")  # fmt: skip
    served = [o for o in outcomes if o.ok]
    slowest = max(outcomes, key=lambda o: o.upload_to_result_s if o.ok else float("inf"))
    print(f"\n{len(served)}/{len(outcomes)} sessions correct; all uploads released together, "
          f"finished in {wall:.1f} s")  # fmt: skip
    analysed = sum(1 for o in served if o.shown.startswith("1. "))
    print(f"throughput: {len(served) / wall * 60:.1f} uploads answered per minute "
          f"({analysed} analyses, {len(served) - analysed} refusals)")  # fmt: skip
    print(f"slowest session: {slowest.job.name} ({slowest.upload_to_result_s:.1f} s from upload to result)")
    return len(served) == len(outcomes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help=f"simultaneous sessions (1-{MAX_SESSIONS})")
    parser.add_argument("--url", help="an app already running on localhost (default: start one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="overall limit in seconds (default 600)")
    parser.add_argument("--no-bad-file", action="store_true", help="skip the extra session with a corrupt file")
    parser.add_argument("--min-margin", type=float, default=0.02, help="top-1 minus top-2 probability of clips")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be 1-{MAX_SESSIONS}")
    if args.url and urllib.parse.urlparse(args.url).hostname not in LOCAL_HOSTS:
        parser.error("the load test only targets an app on localhost")
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing (apt-get install chromium)")

    jobs = choose_jobs(args.sessions, args.min_margin)
    with tempfile.TemporaryDirectory() as tmp:
        bad = None
        if not args.no_bad_file:
            path = Path(tmp) / "noise.wav"
            path.write_bytes(os.urandom(64 * 1024))
            bad = Job("noise.wav (random bytes)", path, BAD_FILE_MESSAGE)
        process, url = (None, args.url) if args.url else start_server(Path(tmp) / "streamlit.log", args.timeout)
        try:
            outcomes, wall = asyncio.run(asyncio.wait_for(run_all(url, jobs, bad, args.timeout), args.timeout))
        finally:
            if process is not None:
                stop_server(process)
    return 0 if report(outcomes, wall) else 1


if __name__ == "__main__":
    sys.exit(main())
