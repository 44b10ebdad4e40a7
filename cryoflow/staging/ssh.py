"""The ``ssh://[user@]host[:port]/abs/path`` stager: SFTP through paramiko, no shell.

Nothing is ever run on a command line, local or remote: remote paths go to the SFTP
server as data, so ``;``, ``$(id)``, quotes or spaces in them are just characters.
Host keys are checked against ``known_hosts`` (``staging.ssh.known_hosts``, else
``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``) with paramiko's
``RejectPolicy``: an unknown or changed host key fails at once, there is no
trust-on-first-use. Keys come from ``staging.ssh.key_files``, the agent and, unless
turned off, ``~/.ssh/id_*``. A failed login or host-key check is permanent; a refused,
reset or timed-out connection is transient. One session per ``user@host:port`` is
kept for the life of the stager and dropped when it breaks.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import posixpath
import secrets
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import paramiko

from cryoflow.errors import StagingError, TransientStagingError
from cryoflow.staging.base import Meta, MissingObjectError, ParsedURL, check_expected, source_size
from cryoflow.staging.config import SshSettings, StagingConfig
from cryoflow.staging.retry import is_transient_os_error, local_write_error

T = TypeVar("T")
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


@dataclass
class _Session:
    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        self.sftp.close()
        self.client.close()


class _HashingWriter:
    """A file-like sink that writes to ``out`` and keeps a SHA-256 of what passed."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        try:
            self.out.write(data)
        except OSError as exc:
            raise local_write_error(exc, "an ssh download") from exc
        self.digest.update(data)
        self.count += len(data)
        return len(data)


class SshStager:
    """Files on other hosts reached over SFTP."""

    def __init__(self, config: StagingConfig) -> None:
        self.settings: SshSettings = config.ssh
        self._sessions: dict[tuple[str, str, int], _Session] = {}

    # -- the interface

    def stat(self, url: ParsedURL) -> Meta:
        attrs = self._do(url, "read", lambda sftp: sftp.stat(url.path))
        return _meta(attrs)

    def fetch(self, url: ParsedURL, dest: Path, *, expected: Meta | None = None) -> Meta:
        meta = self.stat(url)
        if meta.is_dir:
            raise StagingError(f"{url} is a folder, not a file")
        check_expected(meta, expected, url)
        with open(dest, "wb") as out:
            sink = _HashingWriter(out)
            self._do(url, "download", lambda sftp: sftp.getfo(url.path, sink, prefetch=True))
        if sink.count != meta.size:
            raise TransientStagingError(f"{url}: got {sink.count} of {meta.size} bytes")
        return Meta(size=meta.size, mtime=meta.mtime, sha256=sink.digest.hexdigest())

    def push(self, src: Path, url: ParsedURL) -> str:
        if url.is_folder:
            raise StagingError(f"cannot upload {src} to the folder URL {url}: name the file")
        size = source_size(src)
        folder, name = posixpath.split(url.path)
        part = posixpath.join(folder, f".{name[:100]}.part-{secrets.token_hex(4)}")

        def upload(sftp: paramiko.SFTPClient) -> None:
            _make_dirs(sftp, folder)
            try:
                with open(src, "rb") as handle:
                    sftp.putfo(handle, part, file_size=size, confirm=True)
                sftp.posix_rename(part, url.path)
            except BaseException:
                _quietly_remove(sftp, part)
                raise

        self._do(url, "upload to", upload)
        return url.redacted()

    def remove(self, url: ParsedURL, *, recursive: bool = False) -> None:
        def delete(sftp: paramiko.SFTPClient) -> None:
            try:
                attrs = sftp.lstat(url.path)
            except FileNotFoundError:
                return
            if stat.S_ISDIR(attrs.st_mode or 0):
                if not recursive:
                    raise StagingError(f"{url} is a folder: remove it with recursive")
                _remove_tree(sftp, url.path)
            else:
                sftp.remove(url.path)

        self._do(url, "remove", delete)

    def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    # -- sessions and errors

    def _do(self, url: ParsedURL, doing: str, action: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run ``action(sftp)`` on the URL's session; map every failure to a StagingError."""
        session = self._session(url)
        try:
            return action(session.sftp)
        except StagingError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            broken = not session.alive()
            if broken:
                self._drop(url)
            raise _sftp_error(exc, url, doing, broken) from exc

    def _key(self, url: ParsedURL) -> tuple[str, str, int]:
        user = url.user or self.settings.user or getpass.getuser()
        return user, url.host, url.port or self.settings.port

    def _session(self, url: ParsedURL) -> _Session:
        key = self._key(url)
        session = self._sessions.get(key)
        if session is not None and session.alive():
            return session
        if session is not None:
            self._drop(url)
        session = self._sessions[key] = self._connect(url, *key)
        return session

    def _drop(self, url: ParsedURL) -> None:
        session = self._sessions.pop(self._key(url), None)
        if session is not None:
            session.close()

    def _connect(self, url: ParsedURL, user: str, host: str, port: int) -> _Session:
        s = self.settings
        client = paramiko.SSHClient()
        try:
            _load_known_hosts(client, s)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                host,
                port=port,
                username=user,
                key_filename=list(s.key_files) or None,
                allow_agent=s.use_agent,
                look_for_keys=s.look_for_keys,
                timeout=s.connect_timeout_s,
                banner_timeout=s.connect_timeout_s,
                auth_timeout=s.connect_timeout_s,
            )
            sftp = client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(s.read_timeout_s)
        except BaseException as exc:
            client.close()
            if isinstance(exc, Exception) and not isinstance(exc, StagingError):
                raise _connect_error(exc, url, user) from exc
            raise
        return _Session(client, sftp)


def _load_known_hosts(client: paramiko.SSHClient, s: SshSettings) -> None:
    try:
        if s.known_hosts:
            client.load_host_keys(os.path.expanduser(s.known_hosts))
            return
        client.load_system_host_keys()
        if SYSTEM_KNOWN_HOSTS.is_file():
            client.load_system_host_keys(str(SYSTEM_KNOWN_HOSTS))
    except (OSError, paramiko.SSHException) as exc:
        raise StagingError(f"cannot read the ssh known_hosts file: {exc}") from exc


def _connect_error(exc: Exception, url: ParsedURL, user: str) -> StagingError:
    where = f"{url.netloc(with_user=False)} as {user!r} ({url})"
    if isinstance(exc, paramiko.BadHostKeyException):
        return StagingError(
            f"the host key of {where} does not match known_hosts: refusing to connect "
            "(if the host was reinstalled, update known_hosts)"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return StagingError(f"ssh login to {where} failed: {exc}; check staging.ssh key_files")
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return StagingError(
            f"the host key of {where} is not in known_hosts: add it (ssh-keyscan), "
            "cryoflow never trusts an unknown host"
        )
    if isinstance(exc, socket.gaierror) and not is_transient_os_error(exc):
        return StagingError(f"cannot resolve ssh host {where}: {exc}")
    if isinstance(exc, paramiko.SSHException | OSError | EOFError):
        return TransientStagingError(f"cannot connect to ssh host {where}: {exc}")
    return StagingError(f"cannot connect to ssh host {where}: {type(exc).__name__}: {exc}")


def _sftp_error(exc: BaseException, url: ParsedURL, doing: str, broken: bool) -> StagingError:
    if isinstance(exc, FileNotFoundError):
        return MissingObjectError(f"cannot {doing} {url}: it does not exist")
    if isinstance(exc, PermissionError):
        return StagingError(f"cannot {doing} {url}: permission denied")
    if broken or is_transient_os_error(exc) or isinstance(exc, paramiko.SSHException):
        return TransientStagingError(f"cannot {doing} {url}: connection lost ({exc})")
    return StagingError(f"cannot {doing} {url}: {exc}")


def _meta(attrs: paramiko.SFTPAttributes) -> Meta:
    is_dir = stat.S_ISDIR(attrs.st_mode or 0)
    return Meta(
        size=None if is_dir else attrs.st_size,
        mtime=float(attrs.st_mtime) if attrs.st_mtime is not None else None,
        is_dir=is_dir,
    )


def _make_dirs(sftp: paramiko.SFTPClient, folder: str) -> None:
    missing: list[str] = []
    while folder not in ("", "/"):
        try:
            sftp.stat(folder)
            break
        except FileNotFoundError:
            missing.append(folder)
            folder = posixpath.dirname(folder)
    for path in reversed(missing):
        try:
            sftp.mkdir(path)
        except OSError:
            sftp.stat(path)  # made meanwhile by another upload: fine; else raise


def _remove_tree(sftp: paramiko.SFTPClient, folder: str) -> None:
    for entry in sftp.listdir_attr(folder):
        path = posixpath.join(folder, entry.filename)
        if stat.S_ISDIR(entry.st_mode or 0):
            _remove_tree(sftp, path)
        else:
            sftp.remove(path)
    sftp.rmdir(folder)


def _quietly_remove(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, EOFError, paramiko.SSHException):
        pass
