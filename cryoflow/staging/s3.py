"""The ``s3://`` stager (boto3): ``s3://bucket/key`` and ``s3://host[:port]/bucket/key``.

Endpoint, region and credentials come from :class:`S3Settings` or, where unset, from
the standard AWS environment and profile; never from the URL. Large objects move in
parts on a small thread pool, each part streamed from or to the file at its own offset,
so memory stays flat (a 1 MiB buffer per thread), whatever the size of the object.

Downloads are checked against the size and the ETag the server announced: a plain ETag
is the MD5 of the object, a multipart one (``md5-N``) the MD5 of the parts' MD5s, for
which the part size is asked from the server (``HEAD ?partNumber=1``). Parallel ranges
are pinned to that ETag with ``If-Match``, so an object replaced mid-download fails
(and is retried) instead of mixing two versions. Uploads send ``Content-MD5`` for every
request; a failed multipart upload is aborted, at once or, when the server is away, at
the next push or at :meth:`S3Stager.close`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

from cryoflow.errors import StagingError, TransientStagingError
from cryoflow.staging.base import Meta, MissingObjectError, ParsedURL, check_expected, source_size
from cryoflow.staging.config import S3Settings, StagingConfig
from cryoflow.staging.retry import is_transient_os_error, is_transient_status
from cryoflow.staging.s3parts import (
    EtagHasher,
    FileRange,
    PartPool,
    damaged,
    drain,
    flush_behind,
    hash_from_file,
    part_size_for,
    ranges,
)

T = TypeVar("T")
PART_BYTES_META = "cryoflow-part-bytes"
"""Object metadata naming the part size of a multipart upload, to check its ETag later."""
_MISSING = ("NoSuchKey", "404", "NotFound")
_DENIED = (
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
)
_THROTTLED = (
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "PreconditionFailed",
    "412",
    "BadDigest",
    "XAmzContentSHA256Mismatch",
    "IncompleteBody",
)
_NETWORK = (
    bexc.ConnectionError,
    bexc.HTTPClientError,
    bexc.ResponseStreamingError,
    bexc.IncompleteReadError,
)
_NO_CREDENTIALS = (bexc.NoCredentialsError, bexc.PartialCredentialsError, bexc.ProfileNotFound)


def classify(exc: BaseException, url: ParsedURL, doing: str) -> StagingError:
    """Map a boto3/botocore/OS error to a permanent or transient :class:`StagingError`."""
    if isinstance(exc, StagingError):
        return exc
    if isinstance(exc, bexc.ClientError):
        return _client_error(exc, url, doing)
    if isinstance(exc, _NO_CREDENTIALS):
        return StagingError(
            f"cannot {doing} {url}: no usable S3 credentials ({exc}); set "
            "staging.s3.access_key/secret_key or the AWS environment"
        )
    if isinstance(exc, _NETWORK) or is_transient_os_error(exc):
        return TransientStagingError(f"cannot {doing} {url}: S3 unreachable ({exc})")
    return StagingError(f"cannot {doing} {url}: {type(exc).__name__}: {exc}")


def _client_error(exc: bexc.ClientError, url: ParsedURL, doing: str) -> StagingError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code == "NoSuchBucket":
        return StagingError(f"cannot {doing} {url}: bucket {url.bucket!r} does not exist")
    if code in _MISSING:
        return MissingObjectError(f"cannot {doing} {url}: it does not exist")
    if code in _DENIED:
        return StagingError(
            f"cannot {doing} {url}: access denied ({code}); check the S3 "
            "credentials and the bucket policy"
        )
    if code in _THROTTLED or is_transient_status(status):
        return TransientStagingError(f"cannot {doing} {url}: server said {code or status}")
    return StagingError(f"cannot {doing} {url}: {code or status}: {error.get('Message', exc)}")


def _etag(value: Any) -> str | None:
    return str(value).strip('"') if value else None


@dataclass(frozen=True)
class _Ref:
    """One S3 object: the client to use, its bucket, its key and the URL for messages."""

    client: Any
    url: ParsedURL

    @property
    def loc(self) -> dict[str, str]:
        return {"Bucket": self.url.bucket, "Key": self.url.key}


class S3Stager:
    """Objects in S3 (AWS, Ceph RGW, moto, MinIO, ...)."""

    def __init__(self, config: StagingConfig) -> None:
        self.settings = config.s3
        self._session: Any = None
        self._clients: dict[str | None, Any] = {}
        self._orphans: list[tuple[_Ref, str]] = []
        self._lock = threading.Lock()

    # -- the interface

    def stat(self, url: ParsedURL) -> Meta:
        ref = self._ref(url)
        if url.is_folder:
            return self._stat_prefix(ref)
        try:
            return _meta(self._call(ref, "read", lambda: ref.client.head_object(**ref.loc)))
        except MissingObjectError:
            if self._has_prefix(ref, url.key + "/"):
                return Meta(is_dir=True)
            raise

    def fetch(self, url: ParsedURL, dest: Path, *, expected: Meta | None = None) -> Meta:
        ref = self._ref(url)
        head = self._call(ref, "read", lambda: ref.client.head_object(**ref.loc))
        meta = _meta(head)
        check_expected(meta, expected, url)
        hasher = self._hasher(ref, meta, head)
        with open(dest, "w+b") as out:
            if (meta.size or 0) <= self.settings.multipart_threshold_bytes:
                self._get_whole(ref, meta, out.fileno(), hasher)
            else:
                self._get_ranges(ref, meta, out.fileno(), hasher)
        _verify(meta, hasher, url, dest)
        return replace(meta, sha256=None)

    def push(self, src: Path, url: ParsedURL) -> str:
        if url.is_folder:
            raise StagingError(f"cannot upload {src} to the key prefix {url}: name the object")
        size = source_size(src)
        ref = self._ref(url)
        self._abort_orphans()
        if size <= self.settings.multipart_threshold_bytes:
            self._put_whole(ref, src, size)
        else:
            self._put_parts(ref, src, size)
        return url.redacted()

    def remove(self, url: ParsedURL, *, recursive: bool = False) -> None:
        ref = self._ref(url)
        if not recursive:
            if url.is_folder:
                raise StagingError(f"{url} is a key prefix: remove it with recursive")
            self._call(ref, "remove", lambda: ref.client.delete_object(**ref.loc))
            return
        if not url.key.strip("/"):
            raise StagingError(f"refusing to remove every object of bucket {url.bucket!r}")
        for batch in self._list_keys(ref, [url.key.rstrip("/"), url.key.rstrip("/") + "/"]):
            self._delete_batch(ref, batch)

    def close(self) -> None:
        self._abort_orphans()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- connections

    def _ref(self, url: ParsedURL) -> _Ref:
        endpoint = self.settings.endpoint_url
        if url.host:
            scheme = "http" if self.settings.allow_http else "https"
            endpoint = f"{scheme}://{url.netloc(with_user=False)}"
        with self._lock:
            if endpoint not in self._clients:
                self._clients[endpoint] = self._new_client(endpoint, url)
            return _Ref(self._clients[endpoint], url)

    def _new_client(self, endpoint: str | None, url: ParsedURL) -> Any:
        s = self.settings
        try:
            if self._session is None:
                self._session = boto3.session.Session(
                    aws_access_key_id=s.access_key,
                    aws_secret_access_key=s.secret_key,
                    aws_session_token=s.session_token,
                    region_name=s.region,
                    profile_name=s.profile,
                )
            return self._session.client(
                "s3", endpoint_url=endpoint, config=_client_config(s, endpoint), verify=s.verify_tls
            )
        except (bexc.BotoCoreError, ValueError) as exc:
            raise classify(exc, url, "reach") from exc

    def _call(self, ref: _Ref, doing: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except (bexc.BotoCoreError, bexc.ClientError, OSError) as exc:
            raise classify(exc, ref.url, doing) from exc

    # -- reading

    def _stat_prefix(self, ref: _Ref) -> Meta:
        if self._has_prefix(ref, ref.url.key):
            return Meta(is_dir=True)
        raise MissingObjectError(f"{ref.url} does not exist (no object under that prefix)")

    def _has_prefix(self, ref: _Ref, prefix: str) -> bool:
        found = self._call(
            ref,
            "list",
            lambda: ref.client.list_objects_v2(Bucket=ref.url.bucket, Prefix=prefix, MaxKeys=1),
        )
        return bool(found.get("KeyCount"))

    def _hasher(self, ref: _Ref, meta: Meta, head: dict[str, Any]) -> EtagHasher:
        """A hasher for the ETag, inactive where the ETag is not an MD5 (SSE-KMS, SSE-C)."""
        encrypted = str(head.get("ServerSideEncryption", "")).startswith("aws:kms")
        unchecked = not self.settings.verify_etag or head.get("SSECustomerAlgorithm")
        if not meta.etag or encrypted or unchecked:
            return EtagHasher(None)
        if "-" not in meta.etag:
            return EtagHasher(meta.etag)
        return EtagHasher(meta.etag, self._etag_part_bytes(ref, meta.etag, head))

    def _etag_part_bytes(self, ref: _Ref, etag: str, head: dict[str, Any]) -> int:
        """The part size behind a multipart ETag: what cryoflow recorded when it uploaded
        the object, else the server's answer for part 1 if it counts the same parts (Ceph
        RGW ignores ``partNumber``); 0 when unknown, and then only the size is checked."""
        recorded = str(head.get("Metadata", {}).get(PART_BYTES_META, ""))
        if recorded.isdigit():
            return int(recorded)
        try:
            part = ref.client.head_object(**ref.loc, PartNumber=1)
        except (bexc.BotoCoreError, bexc.ClientError):
            return 0
        if str(part.get("PartsCount")) != etag.rpartition("-")[2]:
            return 0
        return int(part.get("ContentLength") or 0)

    def _get_whole(self, ref: _Ref, meta: Meta, fd: int, hasher: EtagHasher) -> None:
        pin = {"IfMatch": f'"{meta.etag}"'} if meta.etag else {}
        response = self._call(ref, "download", lambda: ref.client.get_object(**ref.loc, **pin))
        offset = self._call(ref, "download", lambda: drain(response["Body"], fd, 0, hasher.update))
        if offset != meta.size:
            raise TransientStagingError(f"{ref.url}: got {offset} of {meta.size} bytes")

    def _get_ranges(self, ref: _Ref, meta: Meta, fd: int, hasher: EtagHasher) -> None:
        """Parallel ranged GETs. Ranges follow the upload's parts when the ETag names them,
        so each part's MD5 is taken on the way in; a plain MD5 ETag is hashed in order from
        the file behind the downloads."""
        size = meta.size or 0
        inline = bool(hasher.active and hasher.part_bytes)
        step = hasher.part_bytes if inline else part_size_for(size, self.settings.part_bytes)
        stop = threading.Event()

        def get(offset: int, length: int) -> bytes:
            digest = hashlib.md5()
            update = digest.update if inline else None
            self._call(
                ref, "download", lambda: _get_range(ref, meta, fd, offset, length, stop, update)
            )
            return digest.digest()

        with PartPool(self.settings.max_concurrency, stop) as pool:
            futures = [pool.submit(get, o, n) for o, n in ranges(size, step or size)]
            unsynced = 0
            for future, (offset, length) in zip(futures, ranges(size, step or size)):
                part_md5 = future.result()
                if inline:
                    hasher.add_part(part_md5)
                elif hasher.active:
                    hash_from_file(fd, offset, length, hasher)
                unsynced = flush_behind(fd, unsynced + length)

    def _list_keys(self, ref: _Ref, prefixes: list[str]) -> Iterator[list[str]]:
        paginator = ref.client.get_paginator("list_objects_v2")
        exact, prefix = prefixes
        pages = self._call(
            ref, "list", lambda: list(paginator.paginate(Bucket=ref.url.bucket, Prefix=exact))
        )
        keys = [
            o["Key"]
            for p in pages
            for o in p.get("Contents", [])
            if o["Key"] == exact or o["Key"].startswith(prefix)
        ]
        for start in range(0, len(keys), 1000):
            yield keys[start : start + 1000]

    def _delete_batch(self, ref: _Ref, keys: list[str]) -> None:
        result = self._call(
            ref,
            "remove",
            lambda: ref.client.delete_objects(
                Bucket=ref.url.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            ),
        )
        errors = result.get("Errors") or []
        if errors:
            first = errors[0]
            raise StagingError(
                f"cannot remove s3://{ref.url.bucket}/{first.get('Key')}: "
                f"{first.get('Code')}: {first.get('Message')}"
            )

    # -- writing

    def _put_whole(self, ref: _Ref, src: Path, size: int) -> None:
        self._send_range(ref, src, 0, size)

    def _send_range(
        self, ref: _Ref, src: Path, offset: int, length: int, **part: Any
    ) -> dict[str, Any]:
        """PUT one object (or with ``part``, one part) streamed from the file; the MD5
        taken while sending is checked against the ETag the server answers."""
        send = ref.client.upload_part if part else ref.client.put_object
        with FileRange(src, offset, length) as body:
            reply: dict[str, Any] = self._call(
                ref, "upload to", lambda: send(**ref.loc, **part, Body=body, ContentLength=length)
            )
            sent = body.sent_md5()
        etag = damaged(reply, sent)
        if etag is not None:
            where = f"part {part['PartNumber']} of " if part else ""
            raise TransientStagingError(
                f"{where}{ref.url} arrived damaged: the server has MD5 {etag}, cryoflow sent {sent}"
            )
        return reply

    def _put_parts(self, ref: _Ref, src: Path, size: int) -> None:
        step = part_size_for(size, self.settings.part_bytes)
        created = self._call(
            ref,
            "upload to",
            lambda: ref.client.create_multipart_upload(
                **ref.loc, Metadata={PART_BYTES_META: str(step)}
            ),
        )
        upload_id = created["UploadId"]
        try:
            parts = self._send_parts(ref, src, size, step, upload_id)
            self._call(
                ref,
                "upload to",
                lambda: ref.client.complete_multipart_upload(
                    **ref.loc, UploadId=upload_id, MultipartUpload={"Parts": parts}
                ),
            )
        except BaseException:
            self._abort(ref, upload_id)
            raise

    def _send_parts(
        self, ref: _Ref, src: Path, size: int, step: int, upload_id: str
    ) -> list[dict[str, Any]]:
        stop = threading.Event()

        def send(number: int, offset: int, length: int) -> dict[str, Any]:
            if stop.is_set():
                raise TransientStagingError(f"upload to {ref.url} stopped")
            reply = self._send_range(
                ref, src, offset, length, UploadId=upload_id, PartNumber=number
            )
            return {"PartNumber": number, "ETag": reply["ETag"]}

        with PartPool(self.settings.max_concurrency, stop) as pool:
            numbered = enumerate(ranges(size, step), start=1)
            futures = [pool.submit(send, number, o, n) for number, (o, n) in numbered]
            return [f.result() for f in futures]

    def _abort(self, ref: _Ref, upload_id: str) -> None:
        try:
            ref.client.abort_multipart_upload(**ref.loc, UploadId=upload_id)
        except bexc.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                self._orphans.append((ref, upload_id))
        except (bexc.BotoCoreError, OSError):
            self._orphans.append((ref, upload_id))

    def _abort_orphans(self) -> None:
        orphans, self._orphans = self._orphans, []
        for ref, upload_id in orphans:
            self._abort(ref, upload_id)


def _client_config(s: S3Settings, endpoint: str | None) -> Config:
    return Config(
        connect_timeout=s.connect_timeout_s,
        read_timeout=s.read_timeout_s,
        retries={"total_max_attempts": max(1, s.client_attempts), "mode": "standard"},
        max_pool_connections=max(10, s.max_concurrency * 2),
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # The body is not hashed for the signature (a second read of every part): the
        # MD5 taken while sending is checked against the ETag the server answers.
        s3={"addressing_style": "path" if endpoint else "auto", "payload_signing_enabled": False},
    )


def _meta(head: dict[str, Any]) -> Meta:
    modified = head.get("LastModified")
    return Meta(
        size=int(head["ContentLength"]),
        etag=_etag(head.get("ETag")),
        mtime=modified.timestamp() if modified is not None else None,
    )


def _verify(meta: Meta, hasher: EtagHasher, url: ParsedURL, dest: Path) -> None:
    got = dest.stat().st_size
    if got != meta.size:
        raise TransientStagingError(f"{url}: got {got} of {meta.size} bytes")
    if not hasher.matches():
        raise TransientStagingError(f"{url}: content does not match its ETag {meta.etag}")


def _get_range(
    ref: _Ref,
    meta: Meta,
    fd: int,
    offset: int,
    length: int,
    stop: threading.Event,
    update: Callable[[bytes], None] | None,
) -> None:
    response = ref.client.get_object(
        **ref.loc, Range=f"bytes={offset}-{offset + length - 1}", IfMatch=f'"{meta.etag}"'
    )
    end = drain(response["Body"], fd, offset, update, stop)
    if end - offset != length:
        raise TransientStagingError(f"{ref.url}: range at {offset} got {end - offset} of {length}")
