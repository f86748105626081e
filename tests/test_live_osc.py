"""`irep3d.live.osc`: OSC from python-osc (UDP, 127.0.0.1) steering a real `Player`."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from clip_util import make_clip
from live_util import stripes_clip, write_pack
from proc_util import free_ports, wait_for
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

from irep3d.errors import UsageError
from irep3d.live.ndi import black_uyvy
from irep3d.live.osc import LoopPulse, OscControl
from irep3d.live.player import Player
from irep3d.live.sources import FolderFeed, read_source

# Real time (frames paced by the clock, Ctrl-C timings): `make test` runs these alone.
pytestmark = pytest.mark.realtime


@pytest.fixture
def steered(tmp_path: Path):
    """A player (not sending) of a two-clip pack, an OscControl on it, a client and the log."""
    root = tmp_path / "pack"
    blob = make_clip(root / "blob", name="blob", frames=8, size=(16, 16))
    stripes = stripes_clip(root / "stripes", frames=8, size=(16, 16))
    feed = FolderFeed(read_source(write_pack(root, [("blob", blob), ("stripes", stripes)])), (16, 16))
    player = Player(feed, 30.0, lambda frame: None, black_uyvy(16, 16))
    (port,) = free_ports(1)
    log: list[str] = []
    control = OscControl(player, port, log=log.append).start()
    yield player, SimpleUDPClient("127.0.0.1", port), log, port
    control.close()
    feed.close()


def test_the_addresses_steer_the_player(steered) -> None:
    player, client, log, _ = steered
    client.send_message("/irep3d/clip", 2)
    assert wait_for(lambda: player.status().pending == 1, 5)
    client.send_message("/irep3d/clip", "blob")  # by name: the clip playing, nothing pending
    assert wait_for(lambda: player.status().pending is None, 5)
    client.send_message("/irep3d/next", 1.0)  # a button's press
    assert wait_for(lambda: player.status().pending == 1, 5)
    client.send_message("/irep3d/next", 0.0)  # its release: nothing
    client.send_message("/irep3d/prev", [])
    assert wait_for(lambda: player.status().pending is None, 5)
    client.send_message("/irep3d/speed", -0.5)
    assert wait_for(lambda: player.status().speed == -0.5, 5)
    client.send_message("/irep3d/speed", 2)  # an int is a number too
    assert wait_for(lambda: player.status().speed == 2.0, 5)
    client.send_message("/irep3d/position", 0.5)
    assert wait_for(lambda: player.status().frame == 4, 5)
    client.send_message("/irep3d/blackout", True)
    assert wait_for(lambda: player.status().blackout, 5)
    client.send_message("/irep3d/blackout", [])  # toggles
    assert wait_for(lambda: not player.status().blackout, 5)
    assert log == []


def test_bad_messages_are_one_line_each_and_change_nothing(steered) -> None:
    player, client, log, port = steered
    before = player.status()
    bad = [
        ("/irep3d/speed", "fast"),
        ("/irep3d/speed", 99.0),
        ("/irep3d/position", -0.1),
        ("/irep3d/clip", 3),
        ("/irep3d/clip", 1.5),
        ("/irep3d/clip", "nope"),
        ("/irep3d/blackout", "yes"),
        ("/irep3d/next", [1, 2]),
        ("/irep3d/channels", [1, 2, 3]),  # a folder has no channels to choose
        ("/elsewhere/clip", 1),
    ]
    for address, args in bad:
        client.send_message(address, args)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"not osc at all", ("127.0.0.1", port))
    assert wait_for(lambda: len(log) == len(bad) + 1, 5), log
    assert all(line.startswith("OSC ") and line.endswith("ignored") for line in log), log
    assert "unknown address" in log[-2] and "not an OSC message" in log[-1]
    assert "only a model SOURCE" in log[-3]
    time.sleep(0.1)
    assert player.status() == before


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    folder = make_clip(tmp_path / "blob", frames=2, size=(16, 16))
    feed = FolderFeed(read_source(folder), (16, 16))
    player = Player(feed, 30.0, lambda frame: None, black_uyvy(16, 16))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(UsageError, match=f"OSC port {port} on 127.0.0.1 is in use"):
            OscControl(player, port)
    feed.close()


def test_the_loop_pulse_arrives_at_the_reply_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        pulse = LoopPulse("127.0.0.1", listener.getsockname()[1])
        pulse(1, "stripes")
        message = OscMessage(listener.recv(65536))
    assert (message.address, list(message.params), pulse.sent) == ("/irep3d/loop", [2, "stripes"], 1)
