"""The download guard classes IPv6 addresses that carry an IPv4 address by that address.

NAT64 (``64:ff9b::/96``), IPv4-compatible (``::a.b.c.d``), IPv4-mapped (``::ffff:a.b.c.d``)
and 6to4 (``2002::/16``) addresses reach the IPv4 host they embed, so a name that
resolves to ``64:ff9b::7f00:1`` is as much loopback as ``127.0.0.1``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from cryoflow.errors import StagingError
from cryoflow.staging.base import parse_url
from cryoflow.staging.config import HttpSettings, StagingConfig
from cryoflow.staging.http import HttpStager


class Refused(Exception):
    """Raised by the connector: the guard let the address through."""


def _stager(address: str, connects: list[tuple[str, int]]) -> HttpStager:
    def resolve(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]

    def connect(target: tuple[str, int], timeout: float) -> socket.socket:
        connects.append(target)
        raise Refused(f"connected to {target}")

    config = StagingConfig(http=HttpSettings(schemes=("http",)), cache_dir=None)
    return HttpStager(config, resolve=resolve, connect=connect)


@pytest.mark.parametrize(
    ("address", "kind", "carried"),
    [
        ("64:ff9b::7f00:1", "loopback", "127.0.0.1"),
        ("64:ff9b::a00:1", "private", "10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "link-local", "169.254.169.254"),
        ("::7f00:1", "loopback", "127.0.0.1"),
        ("::a00:1", "private", "10.0.0.1"),
        ("::ffff:a9fe:a9fe", "link-local", "169.254.169.254"),
        ("2002:7f00:1::1", "loopback", "127.0.0.1"),
        ("2002:c0a8:101::1", "private", "192.168.1.1"),
    ],
)
def test_an_ipv6_address_carrying_a_forbidden_ipv4_address_is_refused(
    tmp_path: Path, address: str, kind: str, carried: str
):
    connects: list[tuple[str, int]] = []
    with pytest.raises(StagingError, match=rf"refusing to download.*{carried}, a {kind}"):
        _stager(address, connects).fetch(parse_url("http://sneaky.test/x"), tmp_path / "d")
    assert connects == []


def test_a_local_use_nat64_address_is_refused_whatever_it_carries(tmp_path: Path):
    connects: list[tuple[str, int]] = []
    with pytest.raises(StagingError, match="refusing to download.*local-use NAT64"):
        _stager("64:ff9b:1::808:808", connects).fetch(
            parse_url("http://sneaky.test/x"), tmp_path / "d"
        )
    assert connects == []


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:808:808", "2002:808:808::1"])
def test_an_ipv6_address_carrying_a_public_ipv4_address_is_let_through(
    tmp_path: Path, address: str
):
    connects: list[tuple[str, int]] = []
    with pytest.raises(Refused):
        _stager(address, connects).fetch(parse_url("http://public.test/x"), tmp_path / "d")
    assert connects == [(address, 80)]
