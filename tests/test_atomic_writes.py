"""Atomic writes (utils/files/atomic.py): the old file or the new one, never half; modes, unchanged files, temporaries."""

from __future__ import annotations

import logging
import os
import re
import time

import pytest

import utils.files.atomic as atomic
from utils.files.atomic import atomic_path, atomic_write_bytes, atomic_write_text, is_our_temporary, remove_live_temporaries, remove_stale_temporaries

NAME = re.compile(r"^\.out\.bin\.(\d+)-[0-9a-f]{8}\.tmp$")


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_the_new_content_replaces_the_file_through_a_hidden_sibling_with_the_umask_mode(tmp_path, umask_027):
    target = tmp_path / "sub" / "out.bin"  # the folder is created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and NAME.match(tmp.name) and int(NAME.match(tmp.name).group(1)) == os.getpid()
        assert tmp.exists() and tmp.stat().st_size == 0 and tmp.stat().st_mode & 0o777 == 0o640
        assert tmp in atomic._LIVE
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640
    assert not tmp.exists() and tmp not in atomic._LIVE
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert tmp not in atomic._LIVE
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.unlink()  # the caller removed it already: still no error but its own
            raise ValueError("boom")


def test_identical_content_leaves_the_file_untouched_but_gives_it_the_mode_of_a_new_file(tmp_path, umask_027):
    target = tmp_path / "out.bin"
    target.write_bytes(b"same")
    os.chmod(target, 0o600)
    os.utime(target, (1_000_000, 1_000_000))
    inode = target.stat().st_ino
    atomic_write_bytes(target, b"same")
    assert (target.stat().st_ino, target.stat().st_mtime, target.stat().st_mode & 0o777) == (inode, 1_000_000, 0o640)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    atomic_write_bytes(target, b"samf")  # same size, other bytes
    assert target.read_bytes() == b"samf" and target.stat().st_ino != inode


def test_large_files_are_compared_chunk_by_chunk(tmp_path):
    big = bytes(range(256)) * 9000  # 2.3 MB: more than one 1 MiB chunk
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, big)
    mtime = target.stat().st_mtime_ns
    atomic_write_bytes(target, big)
    assert target.stat().st_mtime_ns == mtime
    changed = bytearray(big)
    changed[-1] ^= 1  # only the last chunk differs
    atomic_write_bytes(target, bytes(changed))
    assert target.read_bytes() == bytes(changed)


def test_text_is_written_as_utf8(tmp_path):
    atomic_write_text(tmp_path / "t.txt", "Wirbelkörper 背景\n")
    assert (tmp_path / "t.txt").read_bytes() == "Wirbelkörper 背景\n".encode("utf-8")


@pytest.mark.parametrize(("name", "ours"), [
    (".out.bin.123-0a1b2c3d.tmp", True), (".m.nii.gz.abc_1234.tmp", True), ("out.bin.123-0a1b2c3d.tmp", False),
    (".out.bin.123-0a1b2c3.tmp", False), (".out.bin.123-0a1b2c3d.tmpx", False), (".out.bin.ABCDEFGH.tmp", False), (".x.tmp", False),
])  # fmt: skip
def test_our_temporaries_are_told_by_name(name, ours):
    assert is_our_temporary(name) is ours


def test_only_our_old_temporaries_are_removed_and_the_removal_is_logged(tmp_path, caplog):
    old = time.time() - atomic.STALE_TEMPORARY_AGE_S - 60
    names = {".a.nii.gz.11-0a1b2c3d.tmp": old, ".b.xlsx.abcd1234.tmp": old, ".c.yaml.12-0a1b2c3d.tmp": time.time(),
             ".other.tmp": old, "d.nii.gz": old}  # fmt: skip
    for name, mtime in names.items():
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (mtime, mtime))
    (tmp_path / ".e.nii.gz.13-0a1b2c3d.tmp").mkdir()  # a folder with our name is not a temporary file
    os.utime(tmp_path / ".e.nii.gz.13-0a1b2c3d.tmp", (old, old))
    with caplog.at_level(logging.INFO, logger="utils.files.atomic"):
        removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".a.nii.gz.11-0a1b2c3d.tmp", ".b.xlsx.abcd1234.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.yaml.12-0a1b2c3d.tmp", ".e.nii.gz.13-0a1b2c3d.tmp", ".other.tmp", "d.nii.gz"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: removed 2 stale temporary files left by an interrupted run or a lost worker: "
        f"{', '.join(p.name for p in removed)}"
    ]
    with caplog.at_level(logging.INFO, logger="utils.files.atomic"):
        assert remove_stale_temporaries(tmp_path, max_age_s=-1) == [tmp_path / ".c.yaml.12-0a1b2c3d.tmp"]
    assert "removed 1 stale temporary file left" in caplog.records[-1].getMessage()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_live_temporaries_are_removed_on_request(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_LIVE", set())
    created = atomic._create_temporary(tmp_path / "x.bin")
    registered_only = tmp_path / ".y.bin.1-0a1b2c3d.tmp"  # registered, never created (interrupted before open)
    atomic._LIVE.add(registered_only)
    assert remove_live_temporaries() == ([created], [])
    assert not created.exists() and atomic._LIVE == set()
    assert remove_live_temporaries() == ([], [])


def test_a_name_collision_takes_another_name_and_a_full_folder_is_an_error(tmp_path, monkeypatch):
    tokens = iter(["0a1b2c3d", "0a1b2c3d", "deadbeef"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    first = atomic._create_temporary(tmp_path / "x.bin")
    second = atomic._create_temporary(tmp_path / "x.bin")
    assert first.name.endswith("-0a1b2c3d.tmp") and second.name.endswith("-deadbeef.tmp")
    assert second in atomic._LIVE and first.exists() and second.exists()
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "0a1b2c3d")
    with pytest.raises(FileExistsError, match="no free temporary file name next to"):
        atomic._create_temporary(tmp_path / "x.bin")
    live = set(atomic._LIVE)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "open", refuse)
    with pytest.raises(PermissionError):
        atomic._create_temporary(tmp_path / "x.bin")
    assert atomic._LIVE == live  # a file that could not be created is not left registered
    monkeypatch.undo()
    remove_live_temporaries()


def test_a_file_of_another_size_is_replaced(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"longer old content")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


def test_without_umask_the_mode_is_that_of_open(tmp_path):
    old = os.umask(0)
    try:
        atomic_write_bytes(tmp_path / "out.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o666


def test_no_free_name_is_a_file_exists_error(tmp_path, monkeypatch):
    import errno

    (tmp_path / f".x.bin.{os.getpid()}-0a1b2c3d.tmp").write_bytes(b"")
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "0a1b2c3d")
    with pytest.raises(FileExistsError) as info:
        atomic._create_temporary(tmp_path / "x.bin")
    assert info.value.errno == errno.EEXIST and str(info.value) == f"[Errno 17] no free temporary file name next to {tmp_path / 'x.bin'}"


def test_removing_live_temporaries_goes_on_after_a_missing_or_unremovable_one(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_LIVE", set())
    folder = tmp_path / ".b.bin.1-0a1b2c3d.tmp"
    folder.mkdir()  # cannot be unlinked: reported as failed
    missing = tmp_path / ".a.bin.1-0a1b2c3d.tmp"  # registered, never created
    created = atomic._create_temporary(tmp_path / "z.bin")
    atomic._LIVE.update({folder, missing})
    assert remove_live_temporaries() == ([created], [folder])
    assert not created.exists() and folder.exists()


def test_stale_removal_never_follows_nor_removes_a_link(tmp_path):
    old = time.time() - atomic.STALE_TEMPORARY_AGE_S - 60
    (tmp_path / "d.nii.gz").write_text("x")
    link = tmp_path / ".l.nii.gz.1-0a1b2c3d.tmp"
    link.symlink_to(tmp_path / "d.nii.gz")
    os.utime(tmp_path / "d.nii.gz", (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    assert remove_stale_temporaries(tmp_path) == []
    assert link.is_symlink() and (tmp_path / "d.nii.gz").exists()


def test_stale_removal_goes_on_after_a_failure(tmp_path, monkeypatch):
    old = time.time() - atomic.STALE_TEMPORARY_AGE_S - 60
    names = [".a.nii.gz.2-0a1b2c3d.tmp", ".b.nii.gz.3-0a1b2c3d.tmp", ".c.nii.gz.4-0a1b2c3d.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (old, old))
    real = os.unlink
    first = []

    def unlink_failing_once(path, *args, **kwargs):
        if not first:
            first.append(path)
            raise PermissionError(13, "Permission denied", path)
        real(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "unlink", unlink_failing_once)
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.path.basename(first[0])]
