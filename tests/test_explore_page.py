"""The explorer's page (`irep3d/explore/static/`) in a real browser, as an artist uses it.

A real uvicorn server serves `builtin:sg3t-256`; Playwright drives Debian's chromium
(`make sysdeps`), headless, its WebGL2 through SwiftShader. The page is found by its
`data-testid`s only (the stable surface of issue 23), and what it makes is checked
against the command line: the clip it renders is byte for byte what `irep3d maps` writes
with the command the page shows, and every frame it plays is that clip's frame as
`irep3d.display` shows it.
"""

from __future__ import annotations

import io
import shlex
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irep3d.display import code_values, quantise
from irep3d.explore.server import Explorer, create_app
from irep3d.exr_clip import read_exr
from tests.proc_util import free_ports, run_cli

# Real time (frames paced by the clock, Ctrl-C timings): `make test` runs these alone.
pytestmark = pytest.mark.realtime

MODEL = "builtin:sg3t-256"
LAYER = "L5_84_64"  # an early layer: 84 px, 64 channels, a walk of 9 frames in about a second
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def served(sg3t, tmp_path_factory) -> Iterator[tuple[str, Explorer]]:
    """The explorer on a free 127.0.0.1 port, served by uvicorn in a thread: (url, explorer)."""
    import uvicorn

    (port,) = free_ports(1)
    explorer = Explorer(sg3t, MODEL, tmp_path_factory.mktemp("explore-out").resolve(), "cpu")
    app = create_app(explorer, "127.0.0.1", port)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the explorer did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", explorer
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's chromium, headless, with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser, served):
    """A new tab on the explorer, its page loaded; fails on any script error in it."""
    url, _ = served
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(url)
    tab.wait_for_selector("body[data-ready=yes]", timeout=20_000)
    yield tab
    if not tab.is_closed():
        tab.close()
    assert not errors, errors


def frames_done(page) -> tuple[int, int]:
    done, total = page.get_by_test_id("frames-done").text_content().split("/")
    return int(done), int(total)


def wait_walk_finished(page, timeout: float = 60.0) -> int:
    """Wait until the page says every frame is computed ("M/M"); return M."""
    page.wait_for_function(
        """() => { const [d, t] = document.querySelector('[data-testid=frames-done]').textContent.split('/');
                   return Number(t) > 0 && d === t; }""",
        timeout=timeout * 1000,
    )
    return frames_done(page)[1]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def changes(page, testid: str, within: float = 3.0) -> bool:
    """Whether the element's screenshot changes within `within` seconds."""
    first = pixels(page.get_by_test_id(testid).screenshot())
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        page.wait_for_timeout(60)
        if not np.array_equal(pixels(page.get_by_test_id(testid).screenshot()), first):
            return True
    return False


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.mark.slow
def test_an_artist_solos_a_layer_picks_channels_watches_renders_and_releases(page, served, tmp_path):
    url, explorer = served
    page.get_by_test_id("seeds").fill("3,17,42")
    page.get_by_test_id("frames-per-seed").fill("3")
    page.get_by_test_id(f"layer-{LAYER}").click()

    # Three channels, each by clicking its slot, then the channel.
    for slot, channel in (("r", 5), ("g", 40), ("b", 3)):
        page.get_by_test_id(f"slot-{slot}").click()
        page.get_by_test_id(f"channel-{channel}").click()
    for slot, channel in (("r", 5), ("g", 40), ("b", 3)):
        assert page.get_by_test_id(f"slot-{slot}").text_content().split() == [slot.upper(), str(channel)]

    assert wait_walk_finished(page) == 9  # 3 seeds x 3 frames, a loop
    assert changes(page, "preview"), "the preview does not play"

    # The 3D view draws the plane: not one flat colour.
    page.wait_for_selector("[data-testid=view-3d][data-rendered]", timeout=20_000)
    view = pixels(page.get_by_test_id("view-3d").screenshot())
    assert len(np.unique(view.reshape(-1, 3), axis=0)) > 100 and view.std() > 10

    # Paused, a channel change alone redraws the preview.
    page.get_by_role("button", name="Pause", exact=True).click()
    before = pixels(page.get_by_test_id("preview").screenshot())
    page.get_by_test_id("slot-b").click()
    page.get_by_test_id("channel-12").click()
    page.wait_for_timeout(50)
    deadline = time.monotonic() + 5
    while np.array_equal(pixels(page.get_by_test_id("preview").screenshot()), before):
        assert time.monotonic() < deadline, "a channel change did not redraw the paused preview"
        page.wait_for_timeout(30)
    page.get_by_test_id("slot-b").click()
    page.get_by_test_id("channel-3").click()

    # The command the page shows, for the clip it will render.
    page.get_by_test_id("clip-name").fill("explored")
    command = page.get_by_test_id("command")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=command]').textContent.includes('--name explored')"
    )
    words = shlex.split(command.text_content())
    assert words[:3] == ["irep3d", "maps", MODEL]
    assert words[words.index("--channels") + 1] == "5,40,3" and words[words.index("--layer") + 1] == LAYER

    # Render it from the page; the same command line writes the same bytes.
    page.get_by_test_id("render-clip").click()
    page.wait_for_function(
        "() => /^(done|failed|cancelled)/.test(document.querySelector('[data-testid=render-status]').textContent)",
        timeout=60_000,
    )
    assert page.get_by_test_id("render-status").text_content() == f"done: {explorer.out / 'explored'}"
    assert page.get_by_test_id("error").text_content() == ""
    words[words.index("--out") + 1] = str(tmp_path / "cli")
    result = run_cli(*words[1:])
    assert result.returncode == 0, result.stderr
    page_clip = folder_bytes(explorer.out / "explored")
    assert page_clip == folder_bytes(tmp_path / "cli" / "explored")
    assert len([name for name in page_clip if name.endswith(".exr")]) == 9

    # Every frame the page plays is the clip's frame, as the loop shows it (8-bit).
    walk = page.get_by_test_id("preview").get_attribute("data-walk")
    for index in range(9):
        shown = pixels(get(f"{url}/api/walk/{walk}/frame/{index}.png?channels=5,40,3"))
        exr, _ = read_exr(explorer.out / "explored" / f"explored_{index + 1:05d}.exr")
        assert np.array_equal(shown, quantise(code_values(exr.astype(np.float32)))), index

    # Add it to a release; `irep3d release` makes it, the same clip again.
    page.get_by_test_id("add-to-release").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=release-path]').textContent.startsWith('added to')"
    )
    release = explorer.out / "release.toml"
    assert page.get_by_test_id("release-path").text_content() == f"added to {release}"
    assert '[[clips]]\nname = "explored"' in release.read_text()
    assert "[[clips]]" in page.get_by_test_id("release-table").text_content()
    result = run_cli("release", release, "--out", tmp_path / "release")
    assert result.returncode == 0, result.stderr
    assert folder_bytes(tmp_path / "release" / "maps" / "clips" / "explored") == page_clip

    # Closing the tab drops its walk (the page says so with a beacon on pagehide).
    assert walk in explorer.walks
    page.close(run_before_unload=True)
    deadline = time.monotonic() + 5
    while walk in explorer.walks:
        assert time.monotonic() < deadline, "the closed tab's walk was kept"
        time.sleep(0.05)


def test_bad_input_shows_the_servers_error_and_the_page_keeps_working(page, served):
    url, _ = served
    error = page.get_by_test_id("error")

    page.get_by_test_id("seeds").fill("0-x")
    page.get_by_test_id("layer-L2_36_64").click()
    page.wait_for_function("() => document.querySelector('[data-testid=error]').textContent !== ''")
    assert error.text_content().startswith("bad seed spec '0-x'")
    assert frames_done(page) == (0, 0)  # no walk started

    page.get_by_test_id("seeds").fill("0-1")
    page.get_by_test_id("frames-per-seed").fill("0")
    page.get_by_test_id("layer-L2_36_64").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=error]').textContent.startsWith('--frames-per-seed')"
    )
    assert error.text_content() == "--frames-per-seed must be at least 1, not 0"
    assert page.get_by_test_id("frames-per-seed").get_attribute("aria-invalid") == "true"
    page.get_by_test_id("frames-per-seed").fill("2.5")  # sent as typed: the server's words
    page.get_by_test_id("layer-L2_36_64").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=error]').textContent.includes('whole number')"
    )
    assert error.text_content() == "--frames-per-seed must be a whole number, not '2.5'"

    # Corrected, the same page walks the layer: the server kept serving.
    page.get_by_test_id("frames-per-seed").fill("2")
    page.get_by_role("button", name="Apply", exact=True).click()  # no layer yet: the page says to pick one
    assert "choose a layer" in error.text_content()
    page.get_by_test_id("layer-L2_36_64").click()
    assert wait_walk_finished(page) == 4
    assert error.text_content() == ""
    assert page.get_by_test_id("frames-per-seed").get_attribute("aria-invalid") is None
    assert b'"model":"builtin:sg3t-256"' in get(f"{url}/api/model")
