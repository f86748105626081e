"""`irep3d.errors`: what an error says, wherever it is raised and read."""

from __future__ import annotations

import pickle

import pytest

from irep3d.errors import OptionError, UsageError
from irep3d.options import maps_options


def test_an_option_error_says_the_flag_and_keeps_key_and_problem():
    with pytest.raises(OptionError) as caught:
        maps_options(frames_per_seed=0)
    error = caught.value
    assert isinstance(error, UsageError)  # the CLI's one line, exit code 2
    assert str(error) == "--frames-per-seed must be at least 1, not 0"
    assert (error.key, error.flag, error.problem) == (
        "frames_per_seed",
        "--frames-per-seed",
        "must be at least 1, not 0",
    )


def test_an_option_error_survives_pickling():
    """A farm worker checks the options too; its error travels back to the driver pickled."""
    error = OptionError("norm", "unknown value 'x'", "unknown --norm 'x'")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is OptionError
    assert (str(back), back.key, back.problem) == ("unknown --norm 'x'", "norm", "unknown value 'x'")
