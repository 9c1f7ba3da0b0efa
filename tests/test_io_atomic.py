"""Atomic writes: the whole new file or the old one, never a partial file or a stray temporary."""

from __future__ import annotations

import json
import os
import stat

import pytest

from machop import io_atomic
from machop.io_atomic import write_atomic, write_json_atomic, write_text_atomic


def names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_text_and_json_are_written_whole_into_new_folders(tmp_path):
    text = write_text_atomic(tmp_path / "a" / "b" / "t.txt", "ünïcode\n")
    assert text == tmp_path / "a" / "b" / "t.txt" and text.read_bytes() == "ünïcode\n".encode()
    data = {"b": [1, 2.5], "a": None, "path": tmp_path}
    path = write_json_atomic(tmp_path / "d.json", data)
    assert path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == {"b": [1, 2.5], "a": None, "path": str(tmp_path)}
    assert names(tmp_path) == ["a", "d.json"]


def test_an_existing_file_is_replaced_not_rewritten_in_place(tmp_path):
    path = write_text_atomic(tmp_path / "f.txt", "a long first version\n")
    with path.open() as reader:  # a reader of the old file keeps reading the old file
        write_text_atomic(path, "short\n")
        assert reader.read() == "a long first version\n"
    assert path.read_text() == "short\n" and names(tmp_path) == ["f.txt"]


def test_the_file_mode_follows_the_umask_like_open_does(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = write_text_atomic(tmp_path / "f.txt", "old\n")

    def half_then_fail(stream):
        stream.write(b"new, but only ha")
        stream.flush()
        raise error
    with pytest.raises(type(error)):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old\n" and names(tmp_path) == ["f.txt"]


def test_a_failing_first_write_leaves_no_file_at_all(tmp_path):
    def fail_midway(stream):
        stream.write(b'{"partial": ')
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError, match="No space left"):
        write_atomic(tmp_path / "f.json", fail_midway)
    assert names(tmp_path) == []


def test_a_permission_error_propagates_and_cleans_up(tmp_path, monkeypatch):
    path = write_text_atomic(tmp_path / "f.txt", "old\n")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))
    monkeypatch.setattr(io_atomic.os, "replace", refuse)
    with pytest.raises(PermissionError, match=f"Permission denied: '{path}'"):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n" and names(tmp_path) == ["f.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_folder_is_a_permission_error_naming_it(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="Permission denied"):
            write_text_atomic(locked / "f.txt", "x")
        assert names(locked) == []
    finally:
        locked.chmod(0o700)


def test_a_folder_in_the_way_is_an_os_error_and_stays(tmp_path):
    (tmp_path / "f.txt").mkdir()
    with pytest.raises(IsADirectoryError):
        write_text_atomic(tmp_path / "f.txt", "x")
    assert (tmp_path / "f.txt").is_dir() and names(tmp_path) == ["f.txt"]


def test_the_cli_reports_an_os_error_on_one_line(cli, tmp_path):
    blocker = tmp_path / "analysis.json"
    blocker.mkdir()  # analyze writes <project>/analysis.json; a folder is in the way
    result = cli("analyze", "jsc-three-linear-layers", "digits", "--metrics", "params",
                 "--project-dir", tmp_path.parent, "--project", tmp_path.name)
    assert result.code == 2, result.stdout
    assert "IsADirectoryError" in result.stderr and len(result.stderr.strip().splitlines()) == 1
