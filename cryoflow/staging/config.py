"""Staging settings: typed, frozen, built once from the ``staging`` part of the config tree.

Nothing here reads files or the environment. Credentials come from this tree or, when
absent, from the standard AWS environment/profile and the ssh agent, which the
libraries consult themselves; never from a graph. Example (YAML)::

    staging:
      retry: {attempts: 5, base_s: 0.5}
      cache_dir: /var/cache/cryoflow     # or cache: false
      s3: {endpoint_url: https://s3.example.org, region: eu-north-1, profile: prod}
      ssh: {user: cryo, key_files: [/etc/cryoflow/id_ed25519], known_hosts: /etc/cryoflow/hosts}
      http: {schemes: [https, http], allow_hosts: [data.internal, 10.1.0.0/16]}
"""

from __future__ import annotations

import os
import tempfile
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from cryoflow.errors import ConfigError
from cryoflow.staging.retry import RetryPolicy

MiB = 1 << 20
GiB = 1 << 30
C = TypeVar("C")


@dataclass(frozen=True, kw_only=True)
class S3Settings:
    """``staging.s3``: where S3 is and how objects move. Keys are never logged."""

    endpoint_url: str | None = None
    """For ``s3://bucket/key`` URLs; default: AWS for the region."""
    region: str | None = None
    profile: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    allow_http: bool = False
    """``s3://host[:port]/bucket/key`` talks https unless this is true."""
    verify_tls: bool = True
    verify_etag: bool = True
    """Check downloads against the ETag (multipart: assumes equal part sizes, as S3
    clients upload them)."""
    part_bytes: int = 16 * MiB
    """Part size of multipart uploads and of parallel ranged downloads (≥ 5 MiB)."""
    multipart_threshold_bytes: int = 32 * MiB
    max_concurrency: int = 8
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    client_attempts: int = 1
    """Tries botocore makes by itself; cryoflow's ``staging.retry`` does the rest."""


@dataclass(frozen=True, kw_only=True)
class SshSettings:
    """``staging.ssh``: login and host-key checking for ``ssh://`` URLs (SFTP only)."""

    user: str | None = None
    """Default: the local user name."""
    port: int = 22
    key_files: tuple[str, ...] = ()
    known_hosts: str | None = None
    """Default: ``~/.ssh/known_hosts``; unknown host keys are always refused."""
    use_agent: bool = True
    look_for_keys: bool = True
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """``staging.http``: the download guard (schemes, address allow-list, limits)."""

    schemes: tuple[str, ...] = ("https",)
    allow_hosts: tuple[str, ...] = ()
    """Host names, IP addresses or networks (``10.0.0.0/8``) allowed although private."""
    max_bytes: int = 10 * GiB
    max_redirects: int = 5
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    total_timeout_s: float | None = None
    verify_tls: bool = True


@dataclass(frozen=True, kw_only=True)
class ArchiveLimits:
    """``staging.unzip``: caps passed to the safe extractor."""

    max_members: int = 100_000
    max_total_bytes: int = 50 * GiB
    max_ratio: float = 200.0


@dataclass(frozen=True, kw_only=True)
class StagingConfig:
    """Everything staging needs; build it with :meth:`from_config`."""

    s3: S3Settings = field(default_factory=S3Settings)
    ssh: SshSettings = field(default_factory=SshSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    unzip: ArchiveLimits = field(default_factory=ArchiveLimits)
    cache_dir: Path | None = None
    """The download cache folder; ``None`` disables the cache."""
    cache_max_bytes: int = 20 * GiB

    @classmethod
    def from_config(cls, tree: Mapping[str, Any] | None) -> StagingConfig:
        """Build from the config tree's ``staging`` mapping; unknown keys are errors.

        The cache is on by default in ``<tmp>/cryoflow-cache-<uid>``; ``cache: false``
        turns it off.
        """
        section = dict((tree or {}).get("staging") or {})
        enabled = section.pop("cache", True)
        if "cache_dir" not in section and enabled:
            section["cache_dir"] = default_cache_dir()
        config = build(cls, section, "staging")
        return config if enabled else replace(config, cache_dir=None)


def default_cache_dir() -> Path:
    """``<tmp>/cryoflow-cache-<uid>``: shared by the workers of one user on one host."""
    return Path(tempfile.gettempdir()) / f"cryoflow-cache-{os.getuid()}"


def build(cls: type[C], values: Mapping[str, Any], where: str) -> C:
    """Make dataclass ``cls`` from ``values``, converting and checking each field."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping, not {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        choices = ", ".join(sorted(known))
        raise ConfigError(f"unknown setting {where}.{unknown[0]}; known: {choices}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    target = next(o for o in options if o is not type(None))
    if hasattr(target, "__dataclass_fields__"):
        return build(target, value, where)
    if typing.get_origin(target) is tuple:
        return _tuple(value, where)
    return _scalar(target, value, where)


def _tuple(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    return tuple(items)


def _scalar(target: Any, value: Any, where: str) -> Any:
    if target is bool and isinstance(value, bool):
        return value
    if target is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if target in (int, float) and not isinstance(value, bool):
        try:
            return target(value)
        except (TypeError, ValueError):
            pass
    if target in (str, Path) and isinstance(value, str | Path):
        return target(value)
    raise ConfigError(f"{where} must be a {getattr(target, '__name__', target)}, not {value!r}")
