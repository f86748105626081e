"""The explorer's API through Starlette's test client: what the page asks, bad input as one
line (HTTP 400, JSON), other hosts and origins refused, writes only under --out."""

from __future__ import annotations

import io
import json
import shlex
import time

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from irep3d.explore.server import Explorer, create_app
from tests.proc_util import run_cli

MODEL = "builtin:sg3t-256"
LAYER = "L3_52_64"
BASE = "http://127.0.0.1:8765"


@pytest.fixture
def served(sg3t, tmp_path):
    explorer = Explorer(sg3t, MODEL, tmp_path / "out")
    client = TestClient(create_app(explorer, "127.0.0.1", 8765), base_url=BASE)
    client.headers["X-Irep3d-Tab"] = "tab-1"
    yield explorer, client
    explorer.close()


def walk(client: TestClient, **options) -> dict:
    answer = client.post("/api/walk", json={"layer": LAYER, "seeds": "3,17,42", "options": options})
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_done(client: TestClient, walk_id: str) -> dict:
    for _ in range(600):
        status = client.get(f"/api/walk/{walk_id}").json()
        if status["finished"]:
            return status
        time.sleep(0.05)
    raise AssertionError("the walk never finished")


def png(answer) -> np.ndarray:
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png", answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))


def test_the_model_and_its_layers_as_the_cli_lists_them(served):
    _, client = served
    model = client.get("/api/model").json()
    assert (model["model"], model["architecture"], model["resolution"], model["device"]) == (
        MODEL, "stylegan3", 256, "cpu"
    )  # fmt: skip
    cli = run_cli("layers", MODEL, "--json")
    assert client.get("/api/layers").json() == json.loads(cli.stdout)


def test_options_come_from_the_declarations(served):
    _, client = served
    options = client.get("/api/options").json()
    walk_names = [o["name"] for o in options["walk"]]
    assert "frames_per_seed" in walk_names and "psi" in walk_names and "loop_start" in walk_names
    assert {s["key"] for s in options["scene"]} >= {"strength", "midlevel", "light_position", "light_height"}
    presets = {p["name"]: p["values"] for p in options["presets"]}
    assert presets["edge-point-light"]["light_edge"] == "left"


def test_a_walk_plays_every_frame_and_channels_change_the_picture(served):
    _, client = served
    started = walk(client, frames_per_seed=3)
    assert (started["frames"], started["width"], started["channels"], started["keyframes"]) == (
        9,
        52,
        64,
        [0, 3, 6],
    )
    assert started["sheet"] == {"columns": 8, "gap": 2}
    status = wait_done(client, started["walk"])
    assert (status["done"], status["total"], status["figures_final"]) == (9, 9, True)
    url = f"/api/walk/{started['walk']}"
    rgb = png(client.get(f"{url}/frame/4.png?channels=0,1,2"))
    assert rgb.shape == (52, 52, 3)
    other = png(client.get(f"{url}/frame/4.png?channels=9,10,11"))
    assert not np.array_equal(rgb, other)
    assert client.get(f"{url}/frame/4.png?channels=9,10,11").headers["x-irep3d-frame"] == "4"
    grey = png(client.get(f"{url}/frame/4.png?channels=5"))
    assert np.array_equal(grey[..., 0], grey[..., 1])
    sheet = png(client.get(f"{url}/channels/4.png?tile=16"))
    assert sheet.shape[:2] == (8 * 16 + 7 * 2, 8 * 16 + 7 * 2)
    picked = client.post(f"{url}/auto").json()["channels"]
    assert len(set(picked)) == 3 and all(0 <= c < 64 for c in picked)  # what maps picks: test_explore_engine


@pytest.mark.parametrize(
    ("body", "needle", "option"),
    [
        ({"layer": "L99"}, "unknown layer 'L99'", None),
        ({"layer": LAYER, "seeds": "3,x"}, "bad seed spec", "seeds"),
        (
            {"layer": LAYER, "options": {"frames_per_seed": 0}},
            "--frames-per-seed must be at least 1",
            "frames_per_seed",
        ),
        ({"layer": LAYER, "options": {"psi": "0.5:9"}}, "ψ sweep runs within [0, 2]", "psi"),
        ({"layer": LAYER, "options": {"norm": "loud"}}, "unknown --norm 'loud'", "norm"),
        ({"layer": LAYER, "options": {"nope": 1}}, "unknown option 'nope'", None),
    ],
)
def test_bad_input_is_one_line_naming_what_is_valid(served, body, needle, option):
    _, client = served
    answer = client.post("/api/walk", json=body)
    assert answer.status_code == 400
    data = answer.json()
    assert needle in data["error"] and "\n" not in data["error"] and "Traceback" not in data["error"]
    assert data.get("option") == option
    assert client.get("/api/model").status_code == 200  # the server keeps serving


def test_bad_frame_requests_are_one_line(served):
    _, client = served
    url = f"/api/walk/{walk(client, frames_per_seed=2)['walk']}"
    for path, needle in [
        (f"{url}/frame/0.png?channels=0,1,99", "channel 99 is out of range"),
        (f"{url}/frame/0.png?channels=0,1", "give 3 channels (R, G, B) or 1"),
        (f"{url}/frame/99.png?channels=0,1,2", "outside the walk"),
        (f"{url}/channels/0.png?tile=9999", "tile must be"),
    ]:
        answer = client.get(path)
        assert answer.status_code == 400 and needle in answer.json()["error"], (path, answer.text)
    gone = client.get("/api/walk/w999")  # replaced, or its tab closed: gone, not bad input
    assert gone.status_code == 410 and "no walk 'w999'" in gone.json()["error"]


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"Host": "evil.example:8765"}, "answers requests for"),
        ({"Host": "127.0.0.1:9999"}, "answers requests for"),
        ({"Origin": "http://evil.example"}, "only the explorer's own page"),
        ({"Origin": "http://127.0.0.1:8765.evil.example"}, "only the explorer's own page"),
    ],
)
def test_other_hosts_and_origins_are_refused(served, headers, needle):
    """A page on another site, or a DNS-rebound name, cannot drive the explorer."""
    explorer, client = served
    answer = client.post("/api/walk", json={"layer": LAYER}, headers=headers)
    assert answer.status_code == 403 and needle in answer.json()["error"]
    assert explorer.walks == {}
    assert (
        client.get(
            "/api/model", headers={"Host": "localhost:8765", "Origin": "http://localhost:8765"}
        ).status_code
        == 200
    )


def test_a_new_walk_or_a_closed_tab_drops_the_computation(served):
    explorer, client = served
    first = walk(client, frames_per_seed=30)["walk"]
    second = walk(client, frames_per_seed=2)["walk"]
    assert first not in explorer.walks and second in explorer.walks  # the tab's old walk cancelled
    other = client.post(
        "/api/walk",
        json={"layer": LAYER, "options": {"frames_per_seed": 2}},
        headers={"X-Irep3d-Tab": "tab-2"},
    ).json()["walk"]
    assert {second, other} <= set(explorer.walks)  # two tabs at once
    client.post("/api/tab/close?tab=tab-2")
    assert other not in explorer.walks and second in explorer.walks


def test_render_is_the_cli_command_byte_for_byte(served, tmp_path):
    """ "Render clip" runs what `irep3d maps` runs: the command the page shows, run in a
    shell, writes the same bytes, clip.json included."""
    explorer, client = served
    url = f"/api/walk/{walk(client, frames_per_seed=2, psi='0.6:1.0', loop_start=0.25)['walk']}"
    command = client.get(f"{url}/command?channels=4,9,2&name=faces").json()["command"]
    assert command.startswith(f"irep3d maps {MODEL} --layer {LAYER} --channels 4,9,2 --seeds 3,17,42")
    assert "--psi 0.6:1.0" in command and "--loop-start 0.25" in command
    job = client.post(f"{url}/render", json={"channels": [4, 9, 2], "name": "faces"}).json()["job"]
    for _ in range(600):
        state = client.get(f"/api/jobs/{job}").json()
        if state["state"] != "running":
            break
        time.sleep(0.05)
    assert state["state"] == "done" and state["path"] == str(explorer.out / "faces"), state
    words = shlex.split(command)
    words[words.index("--out") + 1] = str(tmp_path / "cli")
    assert run_cli(*words[1:]).returncode == 0
    page, cli = explorer.out / "faces", tmp_path / "cli" / "faces"
    assert sorted(p.name for p in page.iterdir()) == sorted(p.name for p in cli.iterdir())
    assert all((page / p.name).read_bytes() == p.read_bytes() for p in cli.iterdir())


def test_writes_stay_under_out(served, tmp_path):
    explorer, client = served
    url = f"/api/walk/{walk(client, frames_per_seed=2)['walk']}"
    for name in ("../escape", "a/b", "..", "/etc/x", ""):
        answer = client.post(f"{url}/render", json={"channels": [0, 1, 2], "name": name})
        assert answer.status_code == 400 and "is not a clip name" in answer.json()["error"], name
        answer = client.post(
            f"{url}/release", json={"channels": [0, 1, 2], "name": "ok", "release": f"{name}.toml"}
        )
        assert answer.status_code == 400, name
    assert not (tmp_path / "escape").exists() and not explorer.out.exists()


def test_on_every_interface_ip_hosts_are_ours_and_names_are_not(sg3t, tmp_path):
    """--host 0.0.0.0: a browser that reaches this machine by an IP address is served; a
    name (what DNS rebinding uses) still is not, unless it is this machine's own."""
    import socket

    explorer = Explorer(sg3t, MODEL, tmp_path / "out")
    client = TestClient(create_app(explorer, "0.0.0.0", 8765), base_url="http://192.168.7.9:8765")
    assert client.get("/api/model").status_code == 200
    assert client.get("/api/model", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/api/model", headers={"Host": f"{socket.gethostname()}:8765"}).status_code == 200
    assert client.get("/api/model", headers={"Host": "rebound.example:8765"}).status_code == 403
    assert client.get("/api/model", headers={"Host": "192.168.7.9:9999"}).status_code == 403
    assert client.get("/api/model", headers={"Origin": "http://evil.example"}).status_code == 403


def test_add_to_release_makes_a_file_irep3d_release_makes(served, tmp_path):
    """The page's values, as a form gives them (text), land typed in a [[clips]] table of a
    release file under --out, which `irep3d release` then makes."""
    explorer, client = served
    url = f"/api/walk/{walk(client, frames_per_seed='2', psi='0.8', loop='true')['walk']}"
    answer = client.post(
        f"{url}/release", json={"channels": [4, 9, 2], "name": "faces", "release": "set.toml"}
    )
    assert answer.status_code == 200, answer.text
    path = explorer.out / "set.toml"
    assert answer.json()["path"] == str(path) and "[[clips]]" in answer.json()["table"]
    assert "frames_per_seed = 2\n" in path.read_text()
    again = client.post(
        f"{url}/release", json={"channels": [4, 9, 2], "name": "faces", "release": "set.toml"}
    )
    assert again.status_code == 400 and "faces" in again.json()["error"]  # one name, once
    made = run_cli("release", path, "--out", tmp_path / "made")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "made" / "maps" / "clips" / "faces" / "faces_00006.exr").is_file()


def test_a_clip_added_to_a_release_file_is_the_clip_the_page_shows(served, tmp_path):
    """A release file's [walk] values apply to its clips: a clip walked with other values
    gets them written into its table, so the release makes what the page showed."""
    explorer, client = served
    explorer.out.mkdir(parents=True)
    path = explorer.out / "set.toml"
    text = (
        'model = "builtin:sg3t-256"\n[walk]\nfps = 25.0\npsi = 0.5\n# mine\n[pack]\nlayers = ["L3_52_64"]\n'
    )
    path.write_text(text)
    url = f"/api/walk/{walk(client, frames_per_seed=2)['walk']}"
    answer = client.post(
        f"{url}/release", json={"channels": [1, 2, 3], "name": "faces", "release": "set.toml"}
    )
    assert answer.status_code == 200, answer.text
    from irep3d.release import load_release

    (clip,) = load_release(path).clips
    assert (clip.options.fps, clip.options.psi, clip.options.frames_per_seed) == (30.0, 1.0, 2)
    assert path.read_text().startswith(text)  # the user's file, appended to
