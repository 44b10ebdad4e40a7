"""The stager interface: one small Protocol that every backend (file, s3, ssh, http) implements.

URLs are parsed once into a frozen :class:`ParsedURL`; backends never see raw strings.
What a backend learns about an object is a :class:`Meta`. Backends raise only
:class:`~cryoflow.errors.StagingError` (permanent: fix something, then retry the job)
or :class:`~cryoflow.errors.TransientStagingError` (may succeed when tried again); the
library error is always the ``__cause__``, and messages name :meth:`ParsedURL.redacted`.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from cryoflow.errors import StagingError, TransientStagingError

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{2,62}$")
_BAD_NAME = re.compile(r"[\x00-\x20\x7f]")
REMOTE_SCHEMES = ("s3", "ssh", "http", "https")
"""Schemes that name something that is not on this host's file system."""


class MissingObjectError(StagingError):
    """The object, file or key a URL names does not exist (a permanent error)."""


@dataclass(frozen=True, kw_only=True)
class ParsedURL:
    """A file location: ``file``, ``s3``, ``ssh``, ``http`` or ``https``.

    ``path`` is the absolute path for ``file``/``ssh``, the path and query for http(s),
    and the object key (no leading ``/``) for ``s3``. ``host`` is empty for ``file``
    and for the ``s3://bucket/key`` form (whose endpoint comes from the config).
    """

    scheme: str
    host: str = ""
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    bucket: str = ""
    path: str = ""

    @property
    def key(self) -> str:
        """The S3 object key (the same as ``path``)."""
        return self.path

    @property
    def name(self) -> str:
        """The last path component: the file name a download gets."""
        return posixpath.basename(self.path.split("?", 1)[0].rstrip("/"))

    @property
    def is_folder(self) -> bool:
        """True when the URL ends with ``/`` (a folder or key prefix)."""
        return self.path.endswith("/") or (self.scheme == "s3" and self.path == "")

    def netloc(self, *, with_user: bool = True) -> str:
        """``[user@]host[:port]`` without the password; hosts that are IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        user = f"{quote(self.user, safe='')}@" if with_user and self.user else ""
        return f"{user}{host}{port}"

    def redacted(self) -> str:
        """The URL for messages and results: no password, and no http(s) query string."""
        if self.scheme == "file":
            return f"file://{quote(self.path)}"
        if self.scheme == "s3":
            prefix = f"{self.netloc()}/" if self.host else ""
            return f"s3://{prefix}{self.bucket}/{self.path}"
        if self.scheme == "ssh":
            return f"ssh://{self.netloc()}{quote(self.path)}"
        path, mark, _ = self.path.partition("?")
        return f"{self.scheme}://{self.netloc(with_user=False)}{path}{'?...' if mark else ''}"

    def __str__(self) -> str:
        return self.redacted()

    def child(self, relative: str) -> ParsedURL:
        """This folder URL joined with a relative ``a/b`` path (``..`` and ``/x`` refused)."""
        parts = safe_parts(relative)
        base = self.path if self.path.endswith("/") or not self.path else self.path + "/"
        joined = base + "/".join(parts)
        return replace(self, path=joined.lstrip("/") if self.scheme == "s3" else joined)

    def as_folder(self) -> ParsedURL:
        """The same location with a trailing ``/``."""
        if self.is_folder:
            return self
        return replace(self, path=self.path + "/")


@dataclass(frozen=True, kw_only=True)
class Meta:
    """What a backend knows about one object or file; ``None`` where it cannot tell."""

    size: int | None = None
    etag: str | None = None
    """The server's entity tag, quotes removed (S3: MD5 hex, or ``md5-N`` for multipart)."""
    sha256: str | None = None
    """Hex SHA-256 of the content, when it was computed on the way."""
    mtime: float | None = None
    is_dir: bool = False

    def version(self) -> str | None:
        """A string that changes when the content changes, for the download cache."""
        if self.etag:
            return f"etag:{self.etag}:{self.size}"
        if self.size is not None and self.mtime is not None:
            return f"mtime:{self.mtime!r}:{self.size}"
        return None


class Stager(Protocol):
    """Moves whole files between this host and one kind of location.

    Contract, checked by ``tests/test_staging_contract.py`` for every backend:

    - ``fetch(url, dest, expected=...)`` streams the object into ``dest`` (a staging
      path the caller renames later; it is created or truncated) and returns its
      :class:`Meta`. Memory use does not grow with the size of the object. Before
      returning it checks that the number of bytes equals the size the server
      announced and, where the server gives one, the ETag or checksum; with
      ``expected`` it also checks the object still has that size and ETag. A mismatch
      raises :class:`TransientStagingError` (the object may be mid-write).
    - ``stat(url)`` returns the :class:`Meta` of an object without reading it.
    - ``push(src, url)`` uploads the local file ``src`` to exactly ``url`` (a
      deterministic key: pushing twice leaves one object), never leaving a partial
      object visible under that name; large files go in parts, and a failed multipart
      upload is aborted. Returns the redacted URL of the object.
    - ``remove(url, recursive=...)`` deletes an object or file; a folder or key prefix
      only with ``recursive``. Removing what does not exist is not an error.
    - ``close()`` releases connections; the stager is not used afterwards.

    A missing object (:class:`MissingObjectError`), a refused permission, a failed
    login or an unknown host key is a :class:`StagingError`; refused or reset
    connections, timeouts, throttling and server errors are
    :class:`TransientStagingError`. Messages name the redacted URL.
    """

    def fetch(self, url: ParsedURL, dest: Path, *, expected: Meta | None = None) -> Meta: ...

    def stat(self, url: ParsedURL) -> Meta: ...

    def push(self, src: Path, url: ParsedURL) -> str: ...

    def remove(self, url: ParsedURL, *, recursive: bool = False) -> None: ...

    def close(self) -> None: ...


def parse_url(text: str) -> ParsedURL:
    """Parse a location: a plain path, or a ``file``/``s3``/``ssh``/``http(s)`` URL.

    ``s3://NAME/...`` names a bucket, unless NAME has a port, a dot, or is an IP address
    or ``localhost``: then it is the endpoint host and the bucket follows
    (``s3://host[:port]/bucket/key``). Raises :class:`StagingError` for other schemes
    and for malformed URLs.
    """
    if "://" not in text:
        return ParsedURL(scheme="file", path=_plain_path(text))
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise StagingError(f"malformed URL {_scrub(text)!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".") if scheme != "file" else ""
    common = ParsedURL(
        scheme=scheme,
        host=host,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
    return _finish(common, parts.netloc, parts.path, parts.query, text)


def _finish(common: ParsedURL, netloc: str, path: str, query: str, text: str) -> ParsedURL:
    scheme = common.scheme
    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise StagingError(f"file URL {text!r} names host {netloc!r}: use ssh:// for that")
        return replace(common, path=_plain_path(unquote(path)))
    if scheme in ("http", "https"):
        _require_host(common, text)
        return replace(common, path=(path or "/") + (f"?{query}" if query else ""))
    if scheme == "ssh":
        _require_host(common, text)
        return replace(common, path=_ssh_path(unquote(path), common))
    if scheme == "s3":
        return _s3(common, unquote(path), text)
    raise StagingError(
        f"unsupported URL scheme {scheme!r} in {_scrub(text)!r}: "
        "use a local path, file://, s3://, ssh://, http:// or https://"
    )


def _s3(common: ParsedURL, path: str, text: str) -> ParsedURL:
    if _is_endpoint_host(common):
        bucket, _, key = path.lstrip("/").partition("/")
        parsed = replace(common, bucket=bucket, path=key)
    else:
        parsed = replace(common, host="", port=None, bucket=common.host, path=path.lstrip("/"))
    if not _S3_BUCKET.match(parsed.bucket):
        raise StagingError(f"S3 URL {_scrub(text)!r} has no valid bucket name")
    if parsed.user or parsed.password:
        raise StagingError(
            f"S3 URL {parsed.redacted()} holds credentials: put them in the staging.s3 config"
        )
    if parsed.path:
        safe_parts(parsed.path.rstrip("/"))
    return parsed


def _is_endpoint_host(url: ParsedURL) -> bool:
    if url.port is not None or url.host == "localhost" or "." in url.host:
        return True
    try:
        ipaddress.ip_address(url.host)
    except ValueError:
        return False
    return True


def _require_host(url: ParsedURL, text: str) -> None:
    if not url.host:
        raise StagingError(f"URL {_scrub(text)!r} names no host")
    for value, what in ((url.host, "host"), (url.user, "user")):
        if value and (value.startswith("-") or _BAD_NAME.search(value)):
            raise StagingError(f"URL {_scrub(text)!r} has an unsafe {what} name {value!r}")


def _ssh_path(path: str, url: ParsedURL) -> str:
    if not path.startswith("/") or "\x00" in path:
        raise StagingError(f"ssh URL {url.redacted()} needs an absolute path after the host")
    return path


def _plain_path(path: str) -> str:
    if not path or "\x00" in path:
        raise StagingError(f"invalid local path {path!r}")
    return path


def check_expected(meta: Meta, expected: Meta | None, url: ParsedURL) -> None:
    """Raise :class:`TransientStagingError` when ``meta`` is not the ``expected`` version."""
    if expected is None:
        return
    etags = expected.etag and meta.etag and expected.etag != meta.etag
    sizes = None not in (expected.size, meta.size) and expected.size != meta.size
    if etags or sizes:
        raise TransientStagingError(
            f"{url} changed since it was looked at ({meta.size} bytes, ETag {meta.etag}; "
            f"expected {expected.size} bytes, ETag {expected.etag})"
        )


def source_size(src: Path) -> int:
    """The size of the local file ``src`` that is about to be uploaded."""
    try:
        if not src.is_file():
            raise StagingError(f"cannot upload {src}: it is not a file")
        return src.stat().st_size
    except OSError as exc:
        raise StagingError(f"cannot upload {src}: {exc.strerror or exc}") from exc


def safe_parts(relative: str) -> tuple[str, ...]:
    """Split a relative ``a/b`` path, refusing empty, absolute, ``..``, NUL and backslash."""
    if "\x00" in relative or "\\" in relative or relative.startswith("/"):
        raise StagingError(f"unsafe relative path {relative!r}")
    parts = tuple(p for p in relative.split("/") if p not in ("", "."))
    if not parts or ".." in parts:
        raise StagingError(f"unsafe relative path {relative!r}")
    return parts


def _scrub(text: str) -> str:
    """Remove a ``user:password@`` part from a URL that could not be parsed."""
    return re.sub(r"//[^/@]*@", "//", text)
