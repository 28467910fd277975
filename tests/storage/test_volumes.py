"""Local volumes on a real file system: emptyDir follows its container, a named volume outlives it."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.model.errors import Invalid, NotFound
from corral.storage import EmptyDir, HostPath, NamedVolume, Volumes, VolumeSource


async def test_an_empty_dir_is_created_for_the_container_and_removed_with_it(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    paths = await volumes.ensure_volumes("uid-1", "default", [VolumeSource("scratch", EmptyDir())])
    scratch = paths["scratch"]
    assert scratch == tmp_path / "volumes/emptydir/uid-1/scratch" and scratch.is_dir()
    assert scratch.stat().st_mode & 0o777 == 0o700
    assert scratch.parent.stat().st_mode & 0o777 == 0o700 and (tmp_path / "volumes").stat().st_mode & 0o777 == 0o700
    (scratch / "f").write_text("x")
    assert await volumes.ensure_volumes("uid-1", "default", [VolumeSource("scratch", EmptyDir())]) == paths
    assert (scratch / "f").read_text() == "x"  # ensure twice keeps the data
    assert await volumes.list_container_volume_dirs() == ["uid-1"]

    await volumes.remove_container_volumes("uid-1")
    await volumes.remove_container_volumes("uid-1")
    assert not scratch.exists() and await volumes.list_container_volume_dirs() == []
    assert list((tmp_path / "volumes/.trash").iterdir()) == []


async def test_a_named_volume_survives_its_container_and_goes_with_its_delete(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    spec = [VolumeSource("data", NamedVolume("db")), VolumeSource("tmp", EmptyDir())]
    data = (await volumes.ensure_volumes("uid-2", "shop", spec))["data"]
    assert data == tmp_path / "volumes/named/shop/db"
    (data / "rows").write_text("1")

    await volumes.remove_container_volumes("uid-2")
    again = await volumes.ensure_volumes("uid-3", "shop", spec)
    assert (again["data"] / "rows").read_text() == "1"
    assert await volumes.list_named_volumes() == [("shop", "db")]

    await volumes.remove_named_volume("shop", "db")
    await volumes.remove_named_volume("shop", "db")
    assert not data.exists() and await volumes.list_named_volumes() == []


async def test_host_paths_pass_through_and_directory_or_create_makes_them(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path / "agent")
    made = tmp_path / "host/new"
    paths = await volumes.ensure_volumes(
        "uid-4",
        "default",
        [VolumeSource("a", HostPath(str(tmp_path))), VolumeSource("b", HostPath(str(made), "DirectoryOrCreate"))],
    )
    assert paths == {"a": tmp_path, "b": made} and made.is_dir()
    with pytest.raises(NotFound):
        await volumes.ensure_volumes(
            "uid-4", "default", [VolumeSource("c", HostPath(str(tmp_path / "no"), "Directory"))]
        )


async def test_names_that_would_escape_the_volume_directories_are_rejected_with_their_fields(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    with pytest.raises(Invalid) as err:
        await volumes.ensure_volumes(
            "uid-5",
            "default",
            [
                VolumeSource("../x", EmptyDir()),
                VolumeSource("v", NamedVolume("a/b")),
                VolumeSource("v", HostPath("rel")),
            ],
        )
    fields = [d.field for d in err.value.details]
    assert fields == [
        "spec.volumes[0].name",
        "spec.volumes[1].volume",
        "spec.volumes[2].name",
        "spec.volumes[2].hostPath.path",
    ]
    with pytest.raises(Invalid):
        await volumes.remove_container_volumes("../..")
    assert not (tmp_path / "volumes").exists()
