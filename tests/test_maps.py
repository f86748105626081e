"""The walk: batch sizing (the options: test_options.py; the engine: test_maps_engine.py)."""

from __future__ import annotations

import torch

from irep3d.generator import load_generator


def test_batch_is_sized_from_free_memory(monkeypatch):
    """Half the free memory over one frame's estimate, capped (4 frames and 1 GiB on a CPU, 64 on a GPU)."""
    import irep3d.maps as maps_module
    from irep3d.maps import CPU_BATCH, MAX_BATCH, default_batch, frame_bytes

    net = load_generator("builtin:sg3t-256", "cpu")
    per_frame = frame_bytes(net, ["L10_276_64"])
    assert frame_bytes(net, ["L3_52_64"]) < per_frame  # a shallower stop needs less
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(maps_module, "free_memory", lambda device: 10 * per_frame)
    assert default_batch(cuda, net, ["L10_276_64"]) == 5
    assert default_batch(cpu, net, ["L10_276_64"]) == CPU_BATCH
    monkeypatch.setattr(maps_module, "free_memory", lambda device: per_frame)
    assert default_batch(cuda, net, ["L10_276_64"]) == 1  # never 0
    monkeypatch.setattr(maps_module, "free_memory", lambda device: 10**6 * per_frame)
    assert default_batch(cuda, net, ["L10_276_64"]) == MAX_BATCH
    # A CPU batch also stays within CPU_BATCH_BYTES of working set: big frames go one by one.
    monkeypatch.setattr(maps_module, "CPU_BATCH_BYTES", 2 * per_frame)
    assert default_batch(cpu, net, ["L10_276_64"]) == 2
    monkeypatch.setattr(maps_module, "CPU_BATCH_BYTES", per_frame // 2)
    assert default_batch(cpu, net, ["L10_276_64"]) == 1
