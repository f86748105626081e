"""Shards slice a job's frames into contiguous parts that together are the whole job."""

import pytest

from irep3d.errors import UsageError
from irep3d.shards import check_shard, parse_shard, shard_range


@pytest.mark.parametrize("first,last,n", [(1, 10, 3), (0, 899, 8), (5, 6, 4), (1, 1, 1), (3, 102, 7)])
def test_shards_cover_the_frames_once_in_order(first, last, n):
    parts = [list(shard_range(first, last, (i, n))) for i in range(n)]
    assert [f for part in parts for f in part] == list(range(first, last + 1))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_parse_shard_reads_i_over_n():
    assert parse_shard("2/8") == (2, 8)
    assert parse_shard(" 0/1") == (0, 1)


@pytest.mark.parametrize("text", ["8/8", "-1/2", "1", "a/b", "1/0", "1/2/3", ""])
def test_bad_shard_text_says_what_is_valid(text):
    with pytest.raises(UsageError, match=r"bad --shard .*use i/n with 0 <= i < n"):
        parse_shard(text)


@pytest.mark.parametrize("shard", [(3, 3), (0, 0), (1.0, 2), "0/1", None])
def test_bad_shard_tuple_is_refused(shard):
    with pytest.raises(UsageError, match="bad shard"):
        check_shard(shard)
