"""A volume's disk usage is measured as du does: allocated blocks, hard links once, no symlinks followed."""

from __future__ import annotations

import os
from pathlib import Path

from corral.storage.usage import disk_usage_sync, human_size


def test_usage_counts_written_data_once_per_inode_and_not_through_symlinks(tmp_path: Path) -> None:
    empty = disk_usage_sync(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "big").write_bytes(os.urandom(1 << 20))
    with_file = disk_usage_sync(tmp_path)
    assert with_file - empty >= 1 << 20
    os.link(tmp_path / "sub" / "big", tmp_path / "again")
    os.symlink("/usr", tmp_path / "elsewhere")
    assert disk_usage_sync(tmp_path) - with_file < 64 << 10  # the link and the symlink cost (almost) nothing


def test_a_sparse_file_costs_what_it_holds_and_a_missing_path_nothing(tmp_path: Path) -> None:
    with (tmp_path / "sparse").open("wb") as f:
        f.truncate(100 << 20)
    assert disk_usage_sync(tmp_path) < 1 << 20
    assert disk_usage_sync(tmp_path / "nope") == 0


def test_sizes_read_as_users_write_them() -> None:
    assert human_size(12 << 20) == "12Mi"
    assert human_size(3 << 29) == "1.5Gi"
    assert human_size(100) == "100"
