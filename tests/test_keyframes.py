"""Keyframes from files: loading w/z arrays, specs that mix seeds and rows, ws and truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irep3d.errors import UsageError
from irep3d.generator import seed_to_z, seeds_to_ws
from irep3d.keyframes import check_keys, keys_to_ws, load_keyfile, parse_keyframes


@pytest.fixture
def net(sg2):
    return sg2


def test_w_rows_are_used_as_given_and_seeds_as_always(net, tmp_path):
    seeds_w = seeds_to_ws(net, [3, 17]).numpy()
    np.savez(tmp_path / "proj.npz", w=seeds_w)
    keyfile = load_keyfile(tmp_path / "proj.npz")
    assert keyfile.kind == "w" and keyfile.rows == 2 and len(keyfile.sha256) == 64
    keys = parse_keyframes("w1,5,w0", keyfile)
    assert keys == ["w1", 5, "w0"]
    ws = keys_to_ws(net, keys, keyfile)
    assert torch.equal(ws[0], torch.from_numpy(seeds_w[1])) and torch.equal(
        ws[2], torch.from_numpy(seeds_w[0])
    )
    assert torch.equal(ws[1], seeds_to_ws(net, [5])[0])
    # Truncation treats a file's w like a seed's: the same pull toward w_avg.
    truncated = keys_to_ws(net, ["w0", 3], keyfile, truncation_psi=0.5, truncation_cutoff=4)
    expected = seeds_to_ws(net, [3], truncation_psi=0.5, truncation_cutoff=4)[0]
    torch.testing.assert_close(truncated[0], expected)
    torch.testing.assert_close(truncated[1], expected)
    assert torch.equal(truncated[0, 4:], torch.from_numpy(seeds_w[0, 4:]))  # past the cutoff: untouched
    assert not torch.allclose(truncated[0, :4], torch.from_numpy(seeds_w[0, :4]))


def test_z_rows_and_one_w_for_all_layers(net, tmp_path):
    np.savez(tmp_path / "z.npz", z=np.concatenate([seed_to_z(9, net.z_dim), seed_to_z(4, net.z_dim)]))
    keyfile = load_keyfile(tmp_path / "z.npz")
    assert parse_keyframes(None, keyfile) == ["w0", "w1"]
    torch.testing.assert_close(keys_to_ws(net, ["w0", "w1"], keyfile), seeds_to_ws(net, [9, 4]))
    w = seeds_to_ws(net, [2])[:, 0].numpy()  # [1, w_dim]
    np.savez(tmp_path / "w2d.npz", projected=w)  # any single array name: a w
    ws = keys_to_ws(net, ["w0"], load_keyfile(tmp_path / "w2d.npz"))
    assert ws.shape == (1, net.synthesis.num_ws, net.w_dim) and torch.equal(ws[0, 5], torch.from_numpy(w[0]))


def test_specs(tmp_path):
    np.savez(tmp_path / "k.npz", w=np.zeros((4, 128), np.float32))
    keyfile = load_keyfile(tmp_path / "k.npz")
    assert parse_keyframes("1-2,w0-2,w3,7", keyfile) == [1, 2, "w0", "w1", "w2", "w3", 7]
    assert parse_keyframes(None, None) == [0, 1, 2, 3]
    assert parse_keyframes("5", None) == [5]
    with pytest.raises(UsageError, match="has rows w0-w3"):
        parse_keyframes("w4", keyfile)
    with pytest.raises(UsageError, match=r"give one with --ws FILE\.npz"):
        parse_keyframes("1,w0", None)
    with pytest.raises(UsageError, match="bad seed spec"):
        parse_keyframes("w0,x", keyfile)


@pytest.mark.parametrize(
    "arrays,needle",
    [
        ({"w": np.zeros((2, 12, 64))}, r"w keyframes of shape \[2, 12, 64\] do not fit this network: it needs w as \[n, 14, 128\] or \[n, 128\]"),
        ({"w": np.zeros((2, 64))}, r"do not fit this network"),
        ({"z": np.zeros((2, 127))}, r"it needs z as \[n, 128\]"),
    ],
)  # fmt: skip
def test_wrong_width_names_the_shapes(net, tmp_path, arrays, needle):
    np.savez(tmp_path / "bad.npz", **arrays)
    keyfile = load_keyfile(tmp_path / "bad.npz")
    with pytest.raises(UsageError, match=needle):
        check_keys(net, ["w0"], keyfile)


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"not a zip", "is not a readable .npz"),
        (None, "holds arrays"),
        ("nan", "not finite"),
        ("4d", "has shape [1, 1, 1, 1]"),
    ],
)
def test_bad_files_are_one_clear_line(tmp_path, content, needle):
    path = tmp_path / "x.npz"
    if content is None:
        np.savez(path, a=np.zeros((1, 4)), b=np.zeros((1, 4)))
    elif content == "nan":
        np.savez(path, w=np.full((1, 4), np.nan))
    elif content == "4d":
        np.savez(path, w=np.zeros((1, 1, 1, 1)))
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=needle.replace("[", r"\[").replace("]", r"\]")) as info:
        load_keyfile(path)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="cannot read --ws"):
        load_keyfile(tmp_path / "missing.npz")


def test_cutoff_and_class_are_checked(net):
    with pytest.raises(UsageError, match="--cutoff must be from 1 to 14"):
        check_keys(net, [1], None, truncation_cutoff=15)
    with pytest.raises(UsageError, match="--class needs a conditional network"):
        check_keys(net, [1], None, class_idx=0)
    cut = keys_to_ws(net, [1], truncation_psi=0.0, truncation_cutoff=2)
    assert torch.equal(cut[0, 0], net.mapping.w_avg) and not torch.equal(cut[0, 2], net.mapping.w_avg)


def test_conditional_network_walks_one_class():
    from irep3d.generator import build_generator
    from irep3d.model_file import NetworkSpec
    from irep3d.networks.stylegan2 import Generator

    kwargs = dict(z_dim=16, c_dim=3, w_dim=16, img_resolution=16, img_channels=3, channel_base=256,
                  channel_max=16, mapping_kwargs=dict(num_layers=2))  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = Generator(**kwargs).state_dict()
    cnet = build_generator(NetworkSpec("stylegan2", kwargs, state, source="test"))
    with pytest.raises(UsageError, match="give --class from 0 to 2"):
        check_keys(cnet, [1], None)
    a, b = keys_to_ws(cnet, [1], class_idx=0), keys_to_ws(cnet, [1], class_idx=2)
    assert torch.equal(a, seeds_to_ws(cnet, [1], class_idx=0)) and not torch.allclose(a, b)
