"""The ``http://``/``https://`` stager: guarded, streamed downloads (read only).

The egress guard (SSRF): only the schemes in ``staging.http.schemes`` (default
``https``); the host name is resolved once per hop and every address must be global
(no loopback, private, link-local, cloud metadata, unspecified, multicast or reserved
address; an IPv6 address carrying an IPv4 one, mapped, compatible, NAT64 or 6to4, is
judged by the address it carries, see ``addresses``) unless ``staging.http.allow_hosts``
names the host or a network holding the address. The connection then goes to that checked address
(the name is still sent as ``Host`` and for TLS), so a second lookup cannot rebind it.
Redirects are followed by hand, each hop checked again, at most ``max_redirects``.

Bodies are streamed to the staging file with connect and read timeouts, an optional
total deadline, and a size cap checked against ``Content-Length`` and while reading; a
body shorter than its ``Content-Length`` is a transient error.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

from cryoflow.errors import StagingError, TransientStagingError
from cryoflow.staging.addresses import address_kind, carried, is_public
from cryoflow.staging.base import Meta, MissingObjectError, ParsedURL, check_expected, parse_url
from cryoflow.staging.config import HttpSettings, StagingConfig
from cryoflow.staging.retry import is_transient_os_error, is_transient_status, local_write_error

CHUNK = 1 << 20
REDIRECTS = (301, 302, 303, 307, 308)
Resolver = Callable[..., list[Any]]
Connector = Callable[[tuple[str, int], float], socket.socket]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


@dataclass(frozen=True)
class Guard:
    """Decides which URLs may be fetched and which address each one connects to."""

    settings: HttpSettings
    resolve: Resolver = socket.getaddrinfo

    def pin(self, url: ParsedURL) -> str:
        """The checked IP address to connect to for ``url``; raises StagingError if refused."""
        if url.scheme not in self.settings.schemes:
            allowed = ", ".join(self.settings.schemes) or "none"
            raise StagingError(
                f"refusing to download {url}: {url.scheme}:// is not allowed (allowed: "
                f"{allowed}; see staging.http.schemes)"
            )
        addresses = self._addresses(url)
        if not self._name_allowed(url.host):
            for address in addresses:
                self._check_address(url, address)
        return str(addresses[0])

    def _addresses(self, url: ParsedURL) -> list[IPAddress]:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = self.resolve(url.host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            error = TransientStagingError if is_transient_os_error(exc) else StagingError
            raise error(f"cannot resolve the host of {url}: {exc}") from exc
        found = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        if not found:
            raise StagingError(f"cannot resolve the host of {url}: no address")
        return found

    def _name_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in {
            h.lower().rstrip(".") for h in self.settings.allow_hosts
        }

    def _check_address(self, url: ParsedURL, address: IPAddress) -> None:
        plain = carried(address)
        if is_public(address):
            return
        if any(plain in network or address in network for network in self._networks()):
            return
        raise StagingError(
            f"refusing to download {url}: {url.host} is {plain}, a {address_kind(plain)} "
            "address; allow it in staging.http.allow_hosts if it is meant"
        )

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for entry in self.settings.allow_hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        return networks


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, url: ParsedURL, address: str, s: HttpSettings, connect: Connector) -> None:
        super().__init__(url.host, url.port or 80, timeout=s.connect_timeout_s)
        self.pinned, self.read_timeout_s, self.opener = address, s.read_timeout_s, connect

    def connect(self) -> None:
        self.sock = self.opener((self.pinned, self.port), self.timeout or 10.0)
        self.sock.settimeout(self.read_timeout_s)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, url: ParsedURL, address: str, s: HttpSettings, connect: Connector) -> None:
        context = ssl.create_default_context()
        if not s.verify_tls:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        super().__init__(url.host, url.port or 443, timeout=s.connect_timeout_s, context=context)
        self.pinned, self.read_timeout_s, self.opener = address, s.read_timeout_s, connect
        self.tls = context

    def connect(self) -> None:
        raw = self.opener((self.pinned, self.port), self.timeout or 10.0)
        raw.settimeout(self.read_timeout_s)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


class HttpStager:
    """Downloads over HTTP(S). ``resolve`` and ``connect`` are injectable for tests."""

    def __init__(
        self,
        config: StagingConfig,
        *,
        resolve: Resolver = socket.getaddrinfo,
        connect: Connector = _connect,
    ) -> None:
        self.settings = config.http
        self.guard = Guard(config.http, resolve)
        self._open = connect

    def stat(self, url: ParsedURL) -> Meta:
        with self._request("HEAD", url) as (final, response):
            return _meta(response, final)

    def fetch(self, url: ParsedURL, dest: Path, *, expected: Meta | None = None) -> Meta:
        with self._request("GET", url) as (final, response):
            meta = _meta(response, final)
            check_expected(meta, expected, url)
            self._check_cap(meta, url)
            with open(dest, "wb") as out:
                count, digest = self._stream(response, out, url)
        if meta.size is not None and count != meta.size:
            raise TransientStagingError(f"{url}: body ended after {count} of {meta.size} bytes")
        return Meta(size=count, etag=meta.etag, sha256=digest, mtime=meta.mtime)

    def push(self, src: Path, url: ParsedURL) -> str:
        raise StagingError(f"cannot upload to {url}: http(s) locations are read-only here")

    def remove(self, url: ParsedURL, *, recursive: bool = False) -> None:
        raise StagingError(f"cannot remove {url}: http(s) locations are read-only here")

    def close(self) -> None:
        """Connections are closed after each request."""

    # -- requests

    def _request(self, method: str, url: ParsedURL) -> _Exchange:
        return _Exchange(self, method, url)

    def _send(self, method: str, url: ParsedURL, auth: str | None) -> _Answer:
        address = self.guard.pin(url)
        kind = _PinnedHTTPS if url.scheme == "https" else _PinnedHTTP
        connection = kind(url, address, self.settings, self._open)
        headers = {"User-Agent": "cryoflow", "Accept-Encoding": "identity"}
        if auth:
            headers["Authorization"] = auth
        try:
            connection.request(method, url.path or "/", headers=headers)
            return _Answer(connection, connection.getresponse())
        except BaseException as exc:
            connection.close()
            if isinstance(exc, OSError | http.client.HTTPException):
                raise _network_error(exc, url) from exc
            raise

    def _check_cap(self, meta: Meta, url: ParsedURL) -> None:
        if meta.size is not None and meta.size > self.settings.max_bytes:
            raise StagingError(
                f"refusing to download {url}: {meta.size} bytes is over the cap of "
                f"{self.settings.max_bytes} (staging.http.max_bytes)"
            )

    def _stream(
        self, response: http.client.HTTPResponse, out: IO[bytes], url: ParsedURL
    ) -> tuple[int, str]:
        digest, count = hashlib.sha256(), 0
        deadline = _deadline(self.settings.total_timeout_s)
        while chunk := _read(response, url):
            count += len(chunk)
            if count > self.settings.max_bytes:
                raise StagingError(
                    f"download of {url} stopped: over the cap of {self.settings.max_bytes} "
                    "bytes (staging.http.max_bytes)"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise TransientStagingError(f"download of {url} took too long")
            _write(out, chunk, url)
            digest.update(chunk)
        return count, digest.hexdigest()


@dataclass
class _Answer:
    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse


class _Exchange:
    """A request that follows redirects through the guard; closes everything on exit."""

    def __init__(self, stager: HttpStager, method: str, url: ParsedURL) -> None:
        self.stager, self.method, self.url = stager, method, url
        self.answer: _Answer | None = None

    def __enter__(self) -> tuple[ParsedURL, http.client.HTTPResponse]:
        try:
            return self._follow()
        except BaseException:
            self._close()
            raise

    def _follow(self) -> tuple[ParsedURL, http.client.HTTPResponse]:
        url, auth = self.url, _basic_auth(self.url)
        for _ in range(self.stager.settings.max_redirects + 1):
            self.answer = self.stager._send(self.method, url, auth)
            status = self.answer.response.status
            if status not in REDIRECTS:
                _check_status(status, url, self.url)
                return url, self.answer.response
            url, auth = self._next(url, auth)
        raise StagingError(
            f"cannot download {self.url}: more than {self.stager.settings.max_redirects} redirects"
        )

    def _next(self, url: ParsedURL, auth: str | None) -> tuple[ParsedURL, str | None]:
        assert self.answer is not None
        location = self.answer.response.getheader("Location")
        self._close()
        if not location:
            raise StagingError(f"cannot download {url}: a redirect without Location")
        target = parse_url(urljoin(_full(url), location))
        if target.scheme not in ("http", "https"):
            raise StagingError(f"refusing to download {self.url}: redirected to {target}")
        same = (target.scheme, target.host, target.port) == (url.scheme, url.host, url.port)
        return target, auth if same else None

    def __exit__(self, *exc_info: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self.answer is not None:
            self.answer.response.close()
            self.answer.connection.close()
            self.answer = None


def _full(url: ParsedURL) -> str:
    """The URL with its query (``redacted`` hides it), for joining a redirect target."""
    return f"{url.scheme}://{url.netloc(with_user=False)}{url.path}"


def _basic_auth(url: ParsedURL) -> str | None:
    if url.user is None:
        return None
    pair = f"{url.user}:{url.password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _check_status(status: int, url: ParsedURL, asked: ParsedURL) -> None:
    if 200 <= status < 300:
        return
    where = f"{asked}" if url == asked else f"{asked} (redirected to {url})"
    if status in (404, 410):
        raise MissingObjectError(f"cannot download {where}: it does not exist (HTTP {status})")
    if is_transient_status(status):
        raise TransientStagingError(f"cannot download {where}: server answered HTTP {status}")
    raise StagingError(f"cannot download {where}: server answered HTTP {status}")


def _meta(response: http.client.HTTPResponse, url: ParsedURL) -> Meta:
    length = response.getheader("Content-Length")
    etag = response.getheader("ETag")
    try:
        size = int(length) if length is not None else None
    except ValueError as exc:
        raise StagingError(f"{url}: bad Content-Length {length!r}") from exc
    return Meta(size=size, etag=etag.strip('"').removeprefix('W/"') if etag else None)


def _read(response: http.client.HTTPResponse, url: ParsedURL) -> bytes:
    try:
        return response.read(CHUNK)
    except http.client.IncompleteRead as exc:
        raise TransientStagingError(f"download of {url} ended early: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(exc, url) from exc


def _write(out: IO[bytes], chunk: bytes, url: ParsedURL) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise local_write_error(exc, str(url)) from exc


def _network_error(exc: BaseException, url: ParsedURL) -> StagingError:
    if isinstance(exc, TimeoutError):
        return TransientStagingError(f"cannot download {url}: timed out")
    if is_transient_os_error(exc) or isinstance(exc, http.client.HTTPException):
        return TransientStagingError(f"cannot download {url}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ssl.SSLError):
        return StagingError(f"cannot download {url}: TLS failed: {exc}")
    return StagingError(f"cannot download {url}: {exc}")


def _deadline(total_s: float | None) -> float | None:
    return None if total_s is None else time.monotonic() + total_s
