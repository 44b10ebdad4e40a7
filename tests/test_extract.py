"""Safe archive extraction: benign archives unpack, bad ones fail."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cryoflow.errors import StagingError, UnsafeArchiveError
from cryoflow.staging.extract import extract_archive, is_archive

TREE = {"top/a.txt": b"alpha\n", "top/sub/b.bin": bytes(range(256)) * 10, "c.txt": b"gamma"}


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """Write a tar archive (compression from the suffix) of TarInfos or (name, data)."""
    mode = {".gz": "w:gz", ".tgz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}.get(path.suffix, "w")
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return path


def make_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"])
def test_a_benign_tar_extracts_every_file_and_returns_the_top_level_entries(
    tmp_path: Path, suffix: str
) -> None:
    archive = make_tar(tmp_path / f"x{suffix}", list(TREE.items()))
    tops = extract_archive(archive, tmp_path / "out")
    assert tops == [tmp_path / "out" / "top", tmp_path / "out" / "c.txt"]
    assert read_tree(tmp_path / "out") == TREE
    assert leftovers(tmp_path) == []


def test_a_benign_zip_extracts_identically_to_its_contents(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "x.zip", [("top/", b""), *TREE.items()])
    tops = extract_archive(archive, tmp_path / "out")
    assert [p.name for p in tops] == ["top", "c.txt"]
    assert read_tree(tmp_path / "out") == TREE


def test_a_tar_made_with_a_dot_root_lists_the_entries_below_the_dot(tmp_path: Path) -> None:
    members = [tar_entry("./", tarfile.DIRTYPE), ("./a.txt", b"a"), ("./d/b.txt", b"b")]
    tops = extract_archive(make_tar(tmp_path / "x.tar", members), tmp_path / "out")
    assert [p.name for p in tops] == ["a.txt", "d"]


def test_an_archive_is_recognised_by_content_when_its_name_says_nothing(tmp_path: Path) -> None:
    tar_blob = make_tar(tmp_path / "t.tar", [("a", b"1")]).rename(tmp_path / "t.data")
    zip_blob = make_zip(tmp_path / "z.zip", [("b", b"2")]).rename(tmp_path / "z.data")
    assert [p.name for p in extract_archive(tar_blob, tmp_path / "t")] == ["a"]
    assert [p.name for p in extract_archive(zip_blob, tmp_path / "z")] == ["b"]
    assert is_archive(Path("x.tar.xz")) and not is_archive(Path("x.data"))


def test_extracting_into_an_existing_folder_replaces_only_same_named_entries(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    (out / "c.txt").parent.mkdir()
    (out / "c.txt").write_text("old")
    (out / "keep.txt").write_text("kept")
    extract_archive(make_tar(tmp_path / "x.tar", list(TREE.items())), out)
    assert (out / "c.txt").read_bytes() == b"gamma"
    assert (out / "keep.txt").read_text() == "kept"
    assert leftovers(tmp_path) == []


TAR_ATTACKS: dict[str, tuple[list[tarfile.TarInfo | tuple[str, bytes]], str, str]] = {
    "dotdot": ([("../evil", b"x")], "../evil", "'..'"),
    "absolute": ([("/abs/evil", b"x")], "/abs/evil", "absolute"),
    "nested dotdot": ([("a/../../evil", b"x")], "a/../../evil", "'..'"),
    "symlink out": ([tar_entry("etc", tarfile.SYMTYPE, "/etc")], "etc", "symbolic link"),
    "symlink then file through it": (
        [tar_entry("work/foo", tarfile.SYMTYPE, "/etc"), ("work/foo/hostname", b"x")],
        "work/foo",
        "symbolic link",
    ),
    "hardlink": ([tar_entry("pw", tarfile.LNKTYPE, "/etc/passwd")], "pw", "hard link"),
    "device": ([tar_entry("dev", tarfile.CHRTYPE)], "dev", "device"),
    "block device": ([tar_entry("blk", tarfile.BLKTYPE)], "blk", "device"),
    "fifo": ([tar_entry("fifo", tarfile.FIFOTYPE)], "fifo", "fifo"),
    "backslash": ([("a\\..\\evil", b"x")], "a\\..\\evil", "backslash"),
    "unicode two-dot leader": ([("\u2025/evil", b"x")], "\u2025/evil", "'..'"),
    "duplicate member": ([("a", b"1"), ("a", b"2")], "a", "twice"),
}


@pytest.mark.parametrize("attack", TAR_ATTACKS, ids=str)
def test_an_unsafe_tar_member_is_rejected_by_name_and_nothing_is_written(
    tmp_path: Path, attack: str
) -> None:
    members, name, reason = TAR_ATTACKS[attack]
    work = tmp_path / "work"
    work.mkdir()
    archive = make_tar(work / "bad.tar", members)
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, work / "out")
    assert f"unsafe archive member {name!r} in {archive}" in str(info.value)
    assert reason in str(info.value)
    assert sorted(p.name for p in work.iterdir()) == ["bad.tar"]
    assert not (tmp_path / "evil").exists()


ZIP_ATTACKS = {
    "dotdot": ("../evil", "'..'"),
    "absolute": ("/abs/evil", "absolute"),
    "nested dotdot": ("a/../../evil", "'..'"),
    "nul byte": ("a\x00b", "NUL"),
}


@pytest.mark.parametrize("attack", ZIP_ATTACKS, ids=str)
def test_an_unsafe_zip_member_name_is_rejected(tmp_path: Path, attack: str) -> None:
    name, reason = ZIP_ATTACKS[attack]
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # bypass ZipInfo's own clean-up, as a hostile tool would
        zf.writestr(info, b"x")
    with pytest.raises(UnsafeArchiveError, match=reason) as exc:
        extract_archive(archive, tmp_path / "out")
    assert repr(name) in str(exc.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [(stat.S_IFLNK | 0o777, "symbolic link"), (stat.S_IFIFO | 0o644, "fifo")],
)
def test_a_zip_member_marked_as_a_special_file_is_rejected(
    tmp_path: Path, mode: int, reason: str
) -> None:
    info = zipfile.ZipInfo("link")
    info.external_attr = mode << 16
    archive = make_zip(tmp_path / "bad.zip", [(info, b"/etc/passwd")])
    with pytest.raises(UnsafeArchiveError, match=f"'link'.*{reason}"):
        extract_archive(archive, tmp_path / "out")


def test_a_zip_bomb_is_rejected_by_its_compression_ratio(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", [("zeros", bytes(20 << 20))])
    with pytest.raises(UnsafeArchiveError, match="'zeros'.*compression ratio"):
        extract_archive(archive, tmp_path / "out", max_ratio=100)
    assert not (tmp_path / "out").exists()


def test_a_tar_gz_bomb_is_stopped_while_streaming(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "bomb.tar.gz", [("zeros", bytes(20 << 20))])
    with pytest.raises(UnsafeArchiveError, match="'zeros'.*compression ratio"):
        extract_archive(archive, tmp_path / "out", max_ratio=100)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("maker", [make_tar, make_zip], ids=["tar", "zip"])
def test_too_many_members_are_rejected_naming_the_first_one_over_the_cap(
    tmp_path: Path, maker: Callable[..., Path]
) -> None:
    members = [(f"f{i}", b"") for i in range(51)]
    archive = maker(tmp_path / ("many.tar" if maker is make_tar else "many.zip"), members)
    with pytest.raises(UnsafeArchiveError, match="'f50'.*more than 50 members"):
        extract_archive(archive, tmp_path / "out", max_members=50)
    assert leftovers(tmp_path) == []


def test_the_total_size_cap_applies_to_what_is_extracted(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tar", [("a", os.urandom(600)), ("b", os.urandom(600))])
    with pytest.raises(UnsafeArchiveError, match="'b'.*exceeds 1000 bytes"):
        extract_archive(archive, tmp_path / "out", max_total_bytes=1000)


def test_a_corrupt_archive_is_a_staging_error_that_names_it(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    with pytest.raises(StagingError, match="broken.tar.gz"):
        extract_archive(archive, tmp_path / "out")
    assert leftovers(tmp_path) == []


def test_a_file_that_is_no_archive_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(StagingError, match="not a zip or tar archive"):
        extract_archive(text, tmp_path / "out")
    with pytest.raises(StagingError, match="does not exist"):
        extract_archive(tmp_path / "missing.zip", tmp_path / "out")
