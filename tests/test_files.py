"""`irep3d.files.read_json_object`: the one reader of JSON manifests (clip, pack, release)."""

from __future__ import annotations

import pytest

from irep3d.errors import OutputError
from irep3d.files import read_json_object

REMEDY = "rebuild the pack with `irep3d pack`"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read"),
        ('{"clips": [', "is not valid JSON"),
        ("[1, 2]", "is not a pack manifest (a JSON object was expected)"),
        (b"\xff\xfe{", "cannot read"),
    ],
    ids=["missing", "cut", "a list", "not text"],
)
def test_a_manifest_that_cannot_be_used_is_one_line_naming_it_and_the_remedy(tmp_path, content, needle):
    path = tmp_path / "pack.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(OutputError) as caught:
        read_json_object(path, REMEDY, "pack manifest")
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and needle in message
    if content is not None and not isinstance(content, bytes):
        assert message.endswith(REMEDY)


def test_an_object_comes_back_as_it_was_written(tmp_path):
    path = tmp_path / "clip.json"
    path.write_text('{"format": "irep3d-clip", "frames": 60, "channels": [1, 2, 3]}')
    assert read_json_object(path, REMEDY) == {"format": "irep3d-clip", "frames": 60, "channels": [1, 2, 3]}
