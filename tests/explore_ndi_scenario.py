"""The explorer's "Send to NDI", watched as a VJ's machine would: run inside a private network
namespace (`tests/live_util.py: in_namespace`), never on its own.

    python explore_ndi_scenario.py PLAN.json

PLAN (JSON): `story` ("api", "follow" or "page": the functions below), `out` (the pickle
written), `model` and `layer`.

It loads the model, serves the real explorer with uvicorn on 127.0.0.1 (in the namespace),
drives it (HTTP for "api" and "follow"; Debian's chromium through Playwright for "page",
launched from here so it lives in the namespace too) and receives the NDI source with a
cyndilib frame-sync receiver (`irep3d.live.ndi.NdiReceiver`) polled every 2 ms in a thread of
its own. It writes what it saw: every frame received with its arrival time, when each step
was taken (`marks`), the server's answers (`answers`), and the reference frames each walk
shows (`WalkCache.frame`, what the preview shows), for the test to check.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

T0 = time.monotonic()


def now() -> float:
    """Seconds since the scenario started (the clock of frames and marks)."""
    return time.monotonic() - T0


class Watch:
    """An NDI receiver of the source `name` in a thread: every frame once, with its arrival
    time. It keeps looking for the source (and NDI reconnects it when it comes back)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[tuple[float, np.ndarray]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from irep3d.live.ndi import NdiReceiver

        try:
            with NdiReceiver(self.name, timeout=30) as receiver:
                while not self._stop.is_set():
                    got = receiver.latest()
                    if got is not None:
                        self.frames.append((now(), got[1]))
                    time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def after(self, start: float) -> list[tuple[float, np.ndarray]]:
        return [f for f in self.frames if f[0] >= start]

    def wait(
        self, count: int, start: float, timeout: float = 30.0, size: tuple[int, int] | None = None
    ) -> None:
        """Until `count` frames (of `size` (h, w), if given) have come since `start`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.error is None:
            got = [f for t, f in self.after(start) if size is None or f.shape[:2] == size]
            if len(got) >= count:
                return
            time.sleep(0.02)
        raise SystemExit(f"{count} frames of {self.name!r} did not come within {timeout:g} s ({self.error})")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Served:
    """The explorer served by uvicorn on 127.0.0.1:port in a thread."""

    def __init__(self, model: str, out: Path) -> None:
        import socket

        import uvicorn

        from irep3d.explore.engine import warm_up
        from irep3d.explore.server import Explorer, create_app
        from irep3d.generator import load_generator

        net = load_generator(model, "cpu")
        warm_up(net)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.explorer = Explorer(net, model, out, "cpu")
        config = uvicorn.Config(
            create_app(self.explorer, "127.0.0.1", self.port),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise SystemExit("the explorer did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None, tab: str = "tab-1") -> tuple[int, dict]:
        """(HTTP status, JSON answer) of one API request from tab `tab`."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("X-Irep3d-Tab", tab)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def walk(self, layer: str, seeds: str, tab: str = "tab-1", **options: Any) -> str:
        """Start a walk of the tab and wait until it is computed; its id."""
        status, answer = self.call(
            "POST", "/api/walk", {"layer": layer, "seeds": seeds, "options": options}, tab
        )
        assert status == 200, answer
        cache = self.explorer.walk(answer["walk"])
        cache.wait(120)
        assert cache.finished and cache.figures_final, cache.error
        return answer["walk"]

    def frames(self, walk: str, channels: list[int]) -> np.ndarray:
        """Every frame of the walk as the preview shows it (`WalkCache.frame`) [N, H, W, 3]."""
        cache = self.explorer.walk(walk)
        return np.stack([cache.frame(i, channels) for i in range(cache.total)])

    def close(self) -> None:
        self.explorer.close()
        self.server.should_exit = True
        self.thread.join(10)


A, B = [3, 17, 42], [5, 40, 12]


def story_api(served: Served, plan: dict) -> dict:
    """On with channels A, channels B, the stream's status, off."""
    walk = served.walk(plan["layer"], "0,1,2", frames_per_seed=4)
    refs = {"A": served.frames(walk, A), "B": served.frames(walk, B)}
    marks, answers = {}, {}
    path = f"/api/walk/{walk}/ndi"
    answers["on"] = served.call("POST", path, {"on": True, "name": "test-explore", "channels": A})
    marks["on"] = now()
    watch = Watch("test-explore")
    try:
        watch.wait(30, marks["on"])  # 1 s of frames, 2.5 loops
        answers["status"] = served.call("GET", path)
        marks["B asked"] = now()
        answers["B"] = served.call("POST", path, {"on": True, "name": "test-explore", "channels": B})
        marks["B"] = now()
        watch.wait(24, marks["B"])
        marks["off asked"] = now()
        answers["off"] = served.call("POST", path, {"on": False})
        marks["off"] = now()
        time.sleep(0.6)
        answers["status off"] = served.call("GET", path)
        marks["end"] = now()
    finally:
        watch.close()
    return {
        "frames": watch.frames,
        "marks": marks,
        "answers": answers,
        "refs": refs,
        "error": str(watch.error),
    }


def story_follow(served: Served, plan: dict) -> dict:
    """A sending tab walks again: the same size (the stream goes on), another size (the
    source opens again under its name); a second tab cannot take the name; the tab closing,
    and the explorer stopping, stop the stream."""
    layer, other = plan["layer"], plan["other_layer"]
    first = served.walk(layer, "0,1,2", frames_per_seed=4)
    refs = {"first": served.frames(first, A)}
    marks, answers = {}, {}
    answers["on"] = served.call(
        "POST", f"/api/walk/{first}/ndi", {"on": True, "name": "test-follow", "channels": A}
    )
    marks["on"] = now()
    watch = Watch("test-follow")
    try:
        watch.wait(20, marks["on"])
        # Another tab asks for the same source name: refused; its own walk is not sent.
        two = served.walk(other, "0,1", tab="tab-2", frames_per_seed=2)
        answers["taken"] = served.call(
            "POST", f"/api/walk/{two}/ndi", {"on": True, "name": "test-follow", "channels": A}, tab="tab-2"
        )
        served.call("POST", "/api/tab/close?tab=tab-2", tab="tab-2")
        # The tab walks again, the same layer (the same frame size): the stream goes on.
        marks["second asked"] = now()
        second = served.walk(layer, "7,8,9", frames_per_seed=4)
        marks["second"] = now()
        refs["second"] = served.frames(second, A)
        answers["second status"] = served.call("GET", f"/api/walk/{second}/ndi")
        watch.wait(30, marks["second"])
        # The tab goes quiet past the timeout (a hidden tab's timers are slowed): it still sends.
        import irep3d.explore.server as server

        timeout, server.TAB_TIMEOUT = server.TAB_TIMEOUT, 0.2
        time.sleep(0.4)
        served.call("GET", "/api/walk/none", tab="tab-3")  # any tab's request drops the quiet ones
        server.TAB_TIMEOUT = timeout
        marks["kept while quiet"] = second in served.explorer.walks and "tab-1" in served.explorer.ndi
        # Another layer (another size): the source opens again at its size, channels kept.
        marks["third asked"] = now()
        third = served.walk(other, "0,1,2", frames_per_seed=4)
        marks["third"] = now()
        refs["third"] = served.frames(third, A)
        cache = served.explorer.walk(third)
        watch.wait(30, marks["third"], size=(cache.height, cache.width))
        answers["third status"] = served.call("GET", f"/api/walk/{third}/ndi")
        # The tab closes: the stream stops.
        served.call("POST", "/api/tab/close?tab=tab-1")
        marks["closed"] = now()
        marks["sending after close"] = len(served.explorer.ndi)
        time.sleep(1.0)
        # Sending again from a new walk; the explorer stops (Ctrl-C): the stream stops.
        fourth = served.walk(other, "0,1,2", frames_per_seed=4)
        answers["again"] = served.call(
            "POST", f"/api/walk/{fourth}/ndi", {"on": True, "name": "test-follow", "channels": A}
        )
        marks["again"] = now()
        watch.wait(15, marks["again"])
        served.explorer.close()
        marks["stopped"] = now()
        marks["sending after stop"] = len(served.explorer.ndi)
        time.sleep(1.0)
    finally:
        watch.close()
    return {
        "frames": watch.frames,
        "marks": marks,
        "answers": answers,
        "refs": refs,
        "error": str(watch.error),
    }


def story_page(served: Served, plan: dict) -> dict:
    """In the page: walk, pick channels, Send to NDI, change a channel, stop; a nameless
    source is refused in the page's error line."""
    from playwright.sync_api import sync_playwright

    marks, answers, refs = {}, {}, {}
    watch = None
    # chromium's own temp folder: a short path (its socket's must fit 108 bytes), not libndi's
    short = tempfile.mkdtemp(prefix="irep3d-chromium-", dir="/tmp")
    env = {**os.environ, "TMPDIR": short}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=plan["chromium"], args=plan["chromium_args"], env=env)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served.url)
            page.wait_for_selector("body[data-ready=yes]", timeout=20_000)
            send, name, error = (page.get_by_test_id(t) for t in ("send-ndi", "ndi-name", "error"))
            answers["default name"] = name.input_value()
            answers["checked at first"] = send.get_attribute("aria-checked")
            page.get_by_test_id("seeds").fill("0,1,2")
            page.get_by_test_id("frames-per-seed").fill("4")
            page.get_by_test_id(f"layer-{plan['layer']}").click()
            for slot, channel in zip("rgb", A, strict=True):
                page.get_by_test_id(f"slot-{slot}").click()
                page.get_by_test_id(f"channel-{channel}").click()
            page.wait_for_function(
                """() => { const [d, t] = document.querySelector('[data-testid=frames-done]').textContent.split('/');
                           return Number(t) > 0 && d === t; }""",
                timeout=60_000,
            )
            walk = page.get_by_test_id("preview").get_attribute("data-walk")
            refs["A"] = served.frames(walk, A)
            refs["A2"] = served.frames(walk, [3, 17, 12])

            # A nameless source: the server's line in the page; the toggle stays off.
            name.fill("  ")
            send.click()
            page.wait_for_function("() => document.querySelector('[data-testid=error]').textContent !== ''")
            answers["nameless"] = error.text_content()
            answers["checked nameless"] = send.get_attribute("aria-checked")

            name.fill("test-page")
            send.click()
            page.wait_for_selector("[data-testid=send-ndi][aria-checked=true]", timeout=20_000)
            marks["on"] = now()
            answers["error on"] = error.text_content()
            watch = Watch("test-page")
            watch.wait(45, marks["on"])
            page.wait_for_function(
                "() => / [1-9][0-9]* receivers? /.test(document.querySelector('[data-testid=ndi-status]').textContent)",
                timeout=10_000,
            )
            answers["status"] = page.get_by_test_id("ndi-status").text_content()
            answers["notice"] = page.locator("#ndi-notice").text_content()

            # A channel change in the page changes what goes out.
            page.get_by_test_id("slot-b").click()
            marks["channel"] = now()  # the click, and what it sends, come after this
            page.get_by_test_id("channel-12").click()
            watch.wait(45, marks["channel"])

            marks["off"] = now()
            send.click()
            page.wait_for_selector("[data-testid=send-ndi][aria-checked=false]", timeout=20_000)
            marks["off answered"] = now()
            answers["status off"] = page.get_by_test_id("ndi-status").text_content()
            answers["notice off"] = page.locator("#ndi-notice").is_visible()
            time.sleep(1.0)
            answers["sending after off"] = len(served.explorer.ndi)
            answers["page errors"] = errors
        finally:
            if watch is not None:
                watch.close()
            browser.close()
            shutil.rmtree(short, ignore_errors=True)
    frames = watch.frames if watch is not None else []
    return {
        "frames": frames,
        "marks": marks,
        "answers": answers,
        "refs": refs,
        "error": str(watch and watch.error),
    }


STORIES = {"api": story_api, "follow": story_follow, "page": story_page}


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    out = Path(plan["out"])
    served = Served(plan["model"], out.parent / "explore-out")
    try:
        seen = STORIES[plan["story"]](served, plan)
    finally:
        served.close()
    out.write_bytes(pickle.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
