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


def test_written_files_follow_the_umask(tmp_path):
    import os

    from groot_ft.io import atomic_write_bytes, atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "deep" / "model.bin", b"w")  # missing parents are made
        atomic_write_json(tmp_path / "cfg.json", {"a": 1})
        with GroupCommit() as batch:
            batch.write(tmp_path / "cache.arrow", b"c")
    finally:
        os.umask(old)
    for name in ("deep/model.bin", "cfg.json", "cache.arrow"):  # readable by the group, as on a shared cluster
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert (tmp_path / "cfg.json").read_text() == '{\n  "a": 1\n}\n'


def test_a_stale_temporary_of_the_same_name_is_skipped(tmp_path, monkeypatch):
    import itertools
    import os

    import groot_ft.io as gio

    monkeypatch.setattr(gio, "_temporary_names", itertools.count(7))
    fd, stale = gio._create_temporary(tmp_path / "x.bin")  # as left by a crashed process with this pid
    os.close(fd)
    monkeypatch.setattr(gio, "_temporary_names", itertools.count(7))
    gio.atomic_write_bytes(tmp_path / "x.bin", b"x")
    assert (tmp_path / "x.bin").read_bytes() == b"x" and os.path.exists(stale)


def test_safetensors_weights_follow_the_umask(tmp_path):
    import os

    import torch
    from safetensors.torch import save_file

    from groot_ft.io import share_like_umask

    path = tmp_path / "model.safetensors"
    old = os.umask(0o027)
    try:
        save_file({"w": torch.zeros(2)}, str(path))  # safetensors itself writes 0600
        share_like_umask(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
