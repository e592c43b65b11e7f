"""The scheduler file (``net/scheduler_file.py``): written whole, read back, and a file
that is not one is refused saying so."""

import pytest

from trioflow.net.scheduler_file import read_scheduler_file, write_scheduler_file


def test_the_file_is_replaced_whole(tmp_path):
    path = tmp_path / "s.json"
    write_scheduler_file(path, "ws://127.0.0.1:1", "scheduler-a")
    write_scheduler_file(path, "ws://127.0.0.1:2", "scheduler-b")
    assert read_scheduler_file(path, 0) == "ws://127.0.0.1:2"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no part file left behind


def test_a_file_without_an_address_is_not_a_scheduler_file(tmp_path):
    not_one = tmp_path / "other.json"
    not_one.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a scheduler file"):
        read_scheduler_file(not_one, 1)
    not_one.write_text("garbage")
    with pytest.raises(ValueError, match="not a scheduler file"):
        read_scheduler_file(not_one, 1)
