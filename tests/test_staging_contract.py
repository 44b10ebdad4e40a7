"""The Stager contract (cryoflow/staging/base.py), run against every backend.

local: the file system · s3: moto's S3 server · ssh: OpenSSH's sshd with paramiko ·
http: a local http.server (read only). Adding a backend: add a case to
``staging_fixtures.backend``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from staging_fixtures import BackendCase, backend, http_server, moto, real_s3, sshd

from cryoflow.errors import StagingError, TransientStagingError
from cryoflow.staging.base import Meta, MissingObjectError

__all__ = ["backend", "http_server", "moto", "real_s3", "sshd"]  # fixtures used by name

pytestmark = pytest.mark.timeout(60)
BIG = 11 << 20  # over the test multipart threshold (6 MiB): 3 parts of 5 MiB


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _writable(case: BackendCase) -> None:
    if not case.writable:
        pytest.skip(f"{case.name} is read only (checked by the read-only test)")


def test_fetch_streams_the_object_and_reports_its_size(backend: BackendCase, tmp_path: Path):
    backend.seed("in/a.txt", b"hello staging")
    dest = tmp_path / "dest"
    meta = backend.stager.fetch(backend.url("in/a.txt"), dest)
    assert dest.read_bytes() == b"hello staging"
    assert meta.size == 13


def test_fetch_of_a_large_object_is_byte_for_byte_identical(backend: BackendCase, tmp_path: Path):
    data = os.urandom(BIG)
    backend.seed("big.bin", data)
    dest = tmp_path / "dest"
    meta = backend.stager.fetch(backend.url("big.bin"), dest)
    assert meta.size == BIG
    assert _sha(dest) == hashlib.sha256(data).hexdigest()


def test_fetch_of_an_empty_object_gives_an_empty_file(backend: BackendCase, tmp_path: Path):
    backend.seed("empty", b"")
    meta = backend.stager.fetch(backend.url("empty"), tmp_path / "dest")
    assert meta.size == 0 and (tmp_path / "dest").read_bytes() == b""


def test_fetch_of_a_missing_object_is_a_permanent_error_naming_the_url(
    backend: BackendCase, tmp_path: Path
):
    url = backend.url("no/such/object")
    with pytest.raises(MissingObjectError) as caught:
        backend.stager.fetch(url, tmp_path / "dest")
    assert not isinstance(caught.value, TransientStagingError)
    assert str(url) in str(caught.value)


def test_stat_reports_the_size_of_an_object(backend: BackendCase):
    backend.seed("s.bin", b"x" * 1234)
    meta = backend.stager.stat(backend.url("s.bin"))
    assert meta.size == 1234 and not meta.is_dir


def test_stat_of_a_missing_object_raises_missing_object_error(backend: BackendCase):
    with pytest.raises(MissingObjectError):
        backend.stager.stat(backend.url("nothing-here"))


def test_fetch_refuses_an_object_whose_size_is_not_the_expected_one(
    backend: BackendCase, tmp_path: Path
):
    backend.seed("v.bin", b"version two")
    with pytest.raises(StagingError, match="changed|expected"):
        backend.stager.fetch(backend.url("v.bin"), tmp_path / "d", expected=Meta(size=3))


def test_push_then_fetch_round_trips_the_bytes(backend: BackendCase, tmp_path: Path):
    _writable(backend)
    src = _file(tmp_path, "src", b"pushed \x00 bytes")
    returned = backend.stager.push(src, backend.url("out/pushed.bin"))
    assert returned == str(backend.url("out/pushed.bin"))
    backend.stager.fetch(backend.url("out/pushed.bin"), tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"pushed \x00 bytes"


def test_push_of_a_large_file_round_trips_in_parts(backend: BackendCase, tmp_path: Path):
    _writable(backend)
    data = os.urandom(BIG)
    src = _file(tmp_path, "src", data)
    backend.stager.push(src, backend.url("big/out.bin"))
    meta = backend.stager.fetch(backend.url("big/out.bin"), tmp_path / "back")
    assert meta.size == BIG
    assert _sha(tmp_path / "back") == hashlib.sha256(data).hexdigest()


def test_push_twice_to_the_same_url_leaves_one_object_with_the_last_bytes(
    backend: BackendCase, tmp_path: Path
):
    _writable(backend)
    url = backend.url("same/key.txt")
    backend.stager.push(_file(tmp_path, "one", b"first"), url)
    backend.stager.push(_file(tmp_path, "two", b"second"), url)
    assert backend.stager.stat(url).size == len(b"second")
    backend.stager.fetch(url, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"second"


def test_push_of_a_missing_source_file_raises_naming_it(backend: BackendCase, tmp_path: Path):
    _writable(backend)
    with pytest.raises(StagingError, match="missing-source"):
        backend.stager.push(tmp_path / "missing-source", backend.url("x"))


def test_remove_deletes_an_object_and_a_missing_one_is_fine(backend: BackendCase):
    _writable(backend)
    backend.seed("rm/one.txt", b"1")
    backend.stager.remove(backend.url("rm/one.txt"))
    assert not backend.exists("rm/one.txt")
    backend.stager.remove(backend.url("rm/one.txt"))


def test_remove_of_a_folder_needs_recursive_and_then_removes_everything_under_it(
    backend: BackendCase,
):
    _writable(backend)
    for name in ("tree/a.txt", "tree/sub/b.txt", "tree-sibling.txt"):
        backend.seed(name, b"data")
    with pytest.raises(StagingError, match="recursive"):
        backend.stager.remove(backend.url("tree/"))
    backend.stager.remove(backend.url("tree"), recursive=True)
    assert not backend.exists("tree/a.txt") and not backend.exists("tree/sub/b.txt")
    assert backend.exists("tree-sibling.txt")


def test_read_only_backends_refuse_push_and_remove_with_a_clear_error(
    backend: BackendCase, tmp_path: Path
):
    if backend.writable:
        pytest.skip(f"{backend.name} is writable")
    with pytest.raises(StagingError, match="read-only"):
        backend.stager.push(_file(tmp_path, "f", b"x"), backend.url("f"))
    with pytest.raises(StagingError, match="read-only"):
        backend.stager.remove(backend.url("f"))


def test_names_with_shell_characters_are_moved_literally(backend: BackendCase, tmp_path: Path):
    _writable(backend)
    name = "odd dir/a;b $(id) `x` 'q'.txt"
    backend.stager.push(_file(tmp_path, "f", b"literal"), backend.url(name))
    assert backend.exists(name)
    backend.stager.fetch(backend.url(name), tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"literal"
