"""Crash-safe writes: GroupCommit shows a file under its name only after its group is synced."""

from __future__ import annotations

import pytest

from groot_ft.io import GroupCommit


def test_files_appear_only_when_their_group_commits(tmp_path):
    batch = GroupCommit(group=3)
    batch.write(tmp_path / "a.bin", b"a")
    batch.write(tmp_path / "sub" / "b.bin", b"bb")
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "sub" / "b.bin").exists()
    assert len(list(tmp_path.glob(".a.bin.*.tmp"))) == 1
    batch.write(tmp_path / "c.bin", b"ccc")  # third file: the group is full and commits
    assert [(tmp_path / n).read_bytes() for n in ("a.bin", "sub/b.bin", "c.bin")] == [b"a", b"bb", b"ccc"]
    batch.write(tmp_path / "a.bin", b"new")
    assert (tmp_path / "a.bin").read_bytes() == b"a"  # the old version stays until the replacement commits
    batch.commit()
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_exception_leaves_no_temporaries_and_no_new_files(tmp_path):
    (tmp_path / "kept.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="stage failed"):
        with GroupCommit() as batch:
            batch.write(tmp_path / "kept.bin", b"half-finished run")
            batch.write(tmp_path / "new.bin", b"x")
            raise RuntimeError("stage failed")
    assert (tmp_path / "kept.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bin"]
