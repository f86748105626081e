"""The `irep3d` commands as a user runs them: output, files, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irep3d.cli import app
from irep3d.model_file import read_network
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
