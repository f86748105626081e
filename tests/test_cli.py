"""The `irep3d` commands as a user runs them: output, files, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from irep3d.cli import app
from irep3d.model_file import NetworkSpec, read_network, write_safetensors
from tests.nvidia_pickle import write_nvidia_pickle
from tests.refdata import load


class Reduce:
    """Pickles as a call of `func(*args)`: how a malicious pickle runs code."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_layers_json_lists_every_layer_in_network_order(tmp_path):
    meta, state, _ = load("sg3t_64")
    path = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state)
    result = run("layers", str(path), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == meta["layer_order"]
    assert [[r["channels"], r["height"], r["width"]] for r in rows] == [
        meta["layer_shapes"][n] for n in meta["layer_order"]
    ]
    assert set(rows[0]) == {"name", "channels", "height", "width"}


def test_layers_table_for_a_stylegan2_builtin():
    result = run("layers", "builtin:sg2-256")
    assert result.exit_code == 0, result.output
    for name in ("b4.conv1", "b8.conv0", "b256.torgb"):
        assert name in result.stdout


def test_convert_writes_a_loadable_safetensors(tmp_path):
    meta, state, _ = load("sg2_64")
    pkl = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state, flavor="stylegan2-ada")
    out = tmp_path / "net.safetensors"
    result = run("convert", str(pkl), str(out))
    assert result.exit_code == 0, result.output
    spec = read_network(out)
    assert spec.architecture == "stylegan2"
    assert set(spec.state_dict) == set(state)
    layers = run("layers", str(out), "--json")
    assert [r["name"] for r in json.loads(layers.stdout)] == meta["layer_order"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["layers", "missing.pkl"], "missing.pkl"),
        (["layers", "builtin:nope"], "builtin:sg3t-256"),
        (["convert", "builtin:sg3t-256", "out.bin"], ".safetensors"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, needle):
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.bin").exists()


def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "PWNED"
    meta, state, _ = load("sg3t_64")
    path = write_nvidia_pickle(
        tmp_path / "evil.pkl",
        meta["init_kwargs"],
        state,
        extra_globals={"payload": Reduce(os.system, f"touch {marker}")},
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "layers", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to load" in result.stderr and "system" in result.stderr
    assert not marker.exists()


def test_models_lists_the_builtins():
    result = run("models")
    assert result.exit_code == 0
    for name in ("builtin:sg3t-256", "builtin:sg3r-256", "builtin:sg2-256"):
        assert name in result.stdout


def _helps(command, path=("irep3d",)):
    """(where, text) of every help text of `command` and its subcommands: their own and their
    parameters'."""
    yield " ".join(path), command.help or ""
    for param in command.params:
        yield f"{' '.join(path)} {param.name}", getattr(param, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _helps(sub, (*path, name))


def test_every_help_text_shows_as_written():
    """`--help` goes through rich markup, which drops anything that reads as a style tag,
    such as the `[n, num_ws, w_dim]` of a shape; escaped (`\\[`), the bracket shows."""
    import typer.main
    from rich.text import Text

    texts = list(_helps(typer.main.get_command(app)))
    assert len(texts) > 100 and any("[n, z_dim]" in t for _, t in texts)
    for where, text in texts:
        assert Text.from_markup(text).plain == text.replace("\\[", "["), where


def test_models_lists_the_released_configurations():
    result = run("models")
    assert result.exit_code == 0, result.output
    for name in ("released:sg3t-1024", "released:sg3r-1024", "released:sg2-1024"):
        assert name in result.stdout
    assert "random weights" in result.stdout


def test_model_whose_weights_disagree_with_its_configuration_is_one_line(tmp_path):
    meta, state, _ = load("sg3t_64")
    state = dict(state, **{"synthesis.L2_36_32.weight": torch.zeros(3, 3, 3, 3)})
    path = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state)
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "layers", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "'synthesis.L2_36_32.weight' has shape [3, 3, 3, 3], the network's is [32, 32, 3, 3]" in lines[0]


@pytest.mark.slow
def test_model_with_nan_weights_warns_once_and_still_runs(tmp_path):
    meta, state, _ = load("sg3t_64")
    state = {key: value.clone() for key, value in state.items()}
    for key in ("synthesis.L2_36_32.weight", "synthesis.L3_36_32.weight", "mapping.fc1.bias"):
        state[key].view(-1)[0] = float("nan")
    path = tmp_path / "nan.safetensors"
    write_safetensors(NetworkSpec("stylegan3", meta["init_kwargs"], state), path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "layers", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == meta["layer_order"]
    (said,) = result.stderr.strip().splitlines()  # one line, nothing else
    assert said.startswith("warning: ") and "3 of its 114 weights hold NaN or infinite values" in said


def test_convert_writes_the_model_with_the_umask_mode(tmp_path):
    """Readable by the farm's nodes (group, others) as the umask allows, not by its owner only."""
    meta, state, _ = load("sg2_64")
    pkl = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state, flavor="stylegan2-ada")
    out = tmp_path / "net.safetensors"
    previous = os.umask(0o002)
    try:
        result = run("convert", str(pkl), str(out))
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o664
