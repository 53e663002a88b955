"""Drive the dashboard in headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

Used by the browser test, by ``make dashboard-shot`` (a screenshot for the README) and to measure
how many rounds a second the page displays while playing::

    python -m market.dashboard.browser shot docs/dashboard.png [--rounds 40] [SCENARIO]
    python -m market.dashboard.browser speed [--seconds 10] [SCENARIO]

Each command starts its own server (``admarket dashboard``) on a free loopback port and stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW = (1500, 1000)
SHOT_WINDOW = (1600, 1200)
ROUND = re.compile(r"Round (\d+)")


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed."""


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return (
                f"{path} is missing: install Debian's {package} "
                "(`make test` does: apt-get install -y chromium chromium-driver)"
            )
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(scenario: str | None = None, port: int | None = None) -> Iterator[str]:
    """``admarket dashboard`` in a subprocess on a free loopback port; yields its URL and stops
    it (SIGINT, then SIGKILL) on exit."""
    port = port or free_port()
    command = [sys.executable, "-m", "market.cli", "dashboard", "--port", str(port)]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [*command, *([scenario] if scenario else [])],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            _wait_listening(process, port, log, timeout=60)
            yield f"http://127.0.0.1:{port}/"
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_listening(process: subprocess.Popen, port: int, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(
                f"the dashboard server exited with {process.returncode}: {log.read()}"
            )
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the dashboard server did not listen on port {port} in {timeout:.0f} s")


@contextlib.contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator:
    """A headless Chromium (selenium WebDriver) with a fresh profile, closed on exit."""
    reason = missing()
    if reason:
        raise BrowserMissing(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="admarket-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The dashboard as a person sees it: buttons to press, the round counter, the reply."""

    def __init__(self, driver, url: str, timeout: float = 60) -> None:
        self.driver = driver
        self.timeout = timeout
        driver.get(url)
        self.wait(lambda: self.button("Step") is not None and "Round" in self.text(), "the page")

    def text(self) -> str:
        return self.driver.execute_script("return document.body.innerText")

    def button(self, label: str):
        """The button labelled ``label`` (any case), or None."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('button')]"
            ".find(b => b.innerText.trim().toLowerCase() === arguments[0]) || null",
            label.lower(),
        )

    def press(self, label: str) -> None:
        """Click the button labelled ``label`` once it is enabled (the page re-renders under
        the driver's feet, so a button found may be gone by the time it is clicked: retry)."""
        from selenium.common.exceptions import StaleElementReferenceException

        def clicked() -> bool:
            try:
                button = self.button(label)
                if button is None or not button.is_enabled():
                    return False
                button.click()
                return True
            except StaleElementReferenceException:
                return False

        self.wait(clicked, f"the {label} button")

    def round(self) -> int | None:
        """The round shown above the reply (None before the first)."""
        found = ROUND.search(self.text())
        return int(found.group(1)) if found else None

    def reply(self) -> str:
        """The reply panel's HTML ("" before the first round)."""
        return self.driver.execute_script(
            "const r = document.querySelector('.am-reply'); return r ? r.innerHTML : ''"
        )

    def play(self) -> None:
        self._toggle("▶", "❚❚")

    def pause(self) -> None:
        self._toggle("❚❚", "▶")

    def _toggle(self, label: str, then: str) -> None:
        """Press ``label`` until the button reads ``then``: a click that lands on a button
        being re-rendered is lost, so it is repeated while the state has not changed."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.button(then) is not None:
                return
            self.press(label)
            with contextlib.suppress(TimeoutError):
                self.wait(lambda: self.button(then) is not None, then, timeout=3)
        raise TimeoutError(f"pressing {label} did not turn it into {then}")

    def step(self) -> int:
        """Press Step and wait for the next round to show; returns it."""
        before = self.round()
        self.press("Step")
        self.wait(lambda: self.round() is not None and self.round() != before, "the next round")
        return self.round()

    def wait(self, done, what: str, timeout: float | None = None) -> None:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"waited {timeout:.0f} s for {what}; the page shows: {self.text()[:500]}"
        )

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))


def shot(path: Path, rounds: int, scenario: str | None) -> None:
    """Play ``rounds`` rounds, pause, step on to a reply that mentions a brand (at most 100
    more rounds), let the charts settle, save a screenshot."""
    with server(scenario) as url, chromium(SHOT_WINDOW) as driver:
        page = Page(driver, url)
        page.play()
        page.wait(lambda: (page.round() or 0) >= rounds, f"round {rounds}")
        page.pause()
        for _ in range(100):
            if "<mark>" in page.reply():
                break
            page.step()
        time.sleep(2)
        page.screenshot(path)
        shown = page.round()
    print(f"saved {path} (round {shown})")


def speed(seconds: float, scenario: str | None) -> float:
    """Rounds a second the page displays while playing (round counter read in the browser)."""
    with server(scenario) as url, chromium() as driver:
        page = Page(driver, url)
        page.play()
        page.wait(lambda: (page.round() or 0) >= 5, "round 5")  # warm-up
        first, start = page.round(), time.monotonic()
        time.sleep(seconds)
        last, elapsed = page.round(), time.monotonic() - start
        page.pause()
    rate = (last - first) / elapsed
    print(f"{rate:.1f} rounds/s displayed (rounds {first}..{last} in {elapsed:.1f} s)")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m market.dashboard.browser")
    commands = parser.add_subparsers(dest="command", required=True)
    take = commands.add_parser("shot", help="save a screenshot of the dashboard")
    take.add_argument("path", type=Path)
    take.add_argument("--rounds", type=int, default=60)
    take.add_argument("scenario", nargs="?")
    measure = commands.add_parser("speed", help="rounds per second displayed while playing")
    measure.add_argument("--seconds", type=float, default=10.0)
    measure.add_argument("scenario", nargs="?")
    args = parser.parse_args(argv)
    try:
        if args.command == "shot":
            shot(args.path, args.rounds, args.scenario)
        else:
            speed(args.seconds, args.scenario)
    except (BrowserMissing, RuntimeError, TimeoutError) as err:
        print(f"admarket dashboard: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
