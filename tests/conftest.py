"""What every test module may share: the built-in networks, built once a session.

Tests that change a network (hooks, patched methods) load their own; these are for
rendering and reading. `monkeypatch` undoes what a test patches on them.
"""

from __future__ import annotations

import pytest

from irep3d.generator import load_generator


@pytest.fixture(scope="session")
def sg3t():
    """builtin:sg3t-256 on the CPU."""
    return load_generator("builtin:sg3t-256", "cpu")


@pytest.fixture(scope="session")
def sg2():
    """builtin:sg2-256 on the CPU."""
    return load_generator("builtin:sg2-256", "cpu")
