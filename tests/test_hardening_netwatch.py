"""The netwatcher refuses what a hostile web page or a hostile client can send.

- Without a token it answers only to a loopback ``Host`` (a page on a DNS-rebound name
  such as ``evil.example`` resolving to 127.0.0.1 is refused).
- A post whose ``Origin`` is another site is refused whatever its Content-Type (a
  browser sends ``text/plain`` or no Content-Type at all without a preflight), unless
  the origin is in the node's ``cors`` list.
- Pebble ids are ASCII digits within SQLite's integer range: anything else is a 400
  with a sentence, never a 500, and ``"١٢"`` is not pebble 12.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from apikit import served
from test_netwatcher import error_of, netwatch

from cryoflow.api.auth import check_access, check_state_change
from cryoflow.watch import httpguard

# ---------------------------------------------------------------------- Host


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example",
                                  "10.0.0.1", ""])
def test_a_post_naming_a_foreign_host_is_refused_without_a_token(
        tmp_path: Path, host: str) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        status, message = error_of(post("POST", "/task", {"n": 1}, headers={"Host": host}))
        assert status == 403 and "loopback Host" in message
        assert error_of(post("GET", "/status/1", headers={"Host": host}))[0] == 403
        assert rig.pebbles() == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST.", "[::1]", "127.0.0.2"])
def test_a_loopback_host_in_any_spelling_is_served(tmp_path: Path, host: str) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        port = post.conn.port
        assert post("POST", "/task", {"n": 1}, headers={"Host": f"{host}:{port}"})[0] == 202
        assert len(rig.pebbles()) == 1


def test_with_a_token_any_host_name_is_served(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, token="t0ken-for-tests") as (rig, post):
        assert post("POST", "/task", {"n": 1}, headers={"Host": "ingest.example"})[0] == 202


# ---------------------------------------------------------------------- Origin


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
def test_a_cross_origin_post_is_refused_whatever_its_content_type(
        tmp_path: Path, content_type: str | None) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        headers = {"Origin": "https://evil.example"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if content_type is None:  # the test client sets JSON by default: send none at all
            answer = _post_without_content_type(post, headers)
        else:
            answer = post("POST", "/task", raw=b'{"n": 1}', headers=headers)
        assert error_of(answer) == (403, "cross-origin requests are not accepted")
        assert error_of(post("POST", "/status", [1], headers=headers))[0] == 403
        assert rig.pebbles() == []


def _post_without_content_type(post: Any, headers: dict[str, str]) -> tuple[int, Any, Any]:
    conn = post.conn
    conn.putrequest("POST", "/task")
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", "8")
    conn.endheaders(b'{"n": 1}')
    response = conn.getresponse()
    return response.status, response.headers, json.loads(response.read())


def test_a_null_origin_is_cross_origin(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        assert error_of(post("POST", "/task", {"n": 1}, headers={"Origin": "null"}))[0] == 403


def test_a_same_origin_post_and_an_allowed_cors_origin_are_accepted(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, cors="https://ok.example") as (rig, post):
        port = post.conn.port
        assert post("POST", "/task", {"n": 1},
                    headers={"Origin": f"http://127.0.0.1:{port}"})[0] == 202
        ok = post("POST", "/task", {"n": 2}, headers={"Origin": "https://ok.example"})
        assert ok[0] == 202 and ok[1]["Access-Control-Allow-Origin"] == "https://ok.example"
        assert error_of(post("POST", "/task", {"n": 3},
                             headers={"Origin": "https://evil.example"}))[0] == 403
        assert len(rig.pebbles()) == 2


def test_the_api_and_the_netwatcher_share_one_host_and_origin_rule() -> None:
    assert check_access.__globals__["host_problem"] is httpguard.host_problem
    assert check_state_change.__globals__["origin_problem"] is httpguard.origin_problem


# ---------------------------------------------------------------------- ids

BAD_IDS = ["9223372036854775808", "99999999999999999999999999", "0", "²", "١٢", "12x",
           "-3", "1" * 5000]


@pytest.mark.parametrize("text", BAD_IDS)
def test_an_id_that_is_not_a_stored_integer_is_a_400_with_a_sentence(
        tmp_path: Path, text: str) -> None:
    with netwatch(tmp_path, workers=0) as (_, post):
        for n in range(13):
            post("POST", "/task", {"n": n})
        for route in ("/status/", "/close/"):
            status, message = error_of(post("GET", route + quote(text)))
            assert status == 400, (route, text, message)
            assert "a pebble id is a whole number from 1 to 9223372036854775807" in message


@pytest.mark.parametrize("value", [2**63, 10**30, -(2**63) - 1, 0])
def test_a_status_list_with_an_id_out_of_range_is_a_400(tmp_path: Path, value: int) -> None:
    with netwatch(tmp_path, workers=0) as (_, post):
        status, message = error_of(post("POST", "/status", [1, value]))
        assert status == 400 and "from 1 to 9223372036854775807" in message


def test_the_largest_stored_id_is_answered_404_not_an_error(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (_, post):
        assert error_of(post("GET", f"/status/{2**63 - 1}"))[0] == 404
        assert post("POST", "/status", [2**63 - 1])[2] == {str(2**63 - 1): None}


@pytest.mark.parametrize("text", ["١٢", "²", "1_000", " 12"])
def test_the_rest_api_reads_no_unicode_digits_as_a_number_either(
        tmp_path: Path, text: str) -> None:
    async def ask() -> tuple[int, Any]:
        async with served(tmp_path / "state") as s:
            return await s.get(f"/api/v1/jobs?pebble={quote(text)}")

    status, body = asyncio.run(ask())
    assert status == 400 and "must be an integer" in body["error"], body


def test_a_barrage_of_hostile_requests_makes_no_pebble_and_no_500(tmp_path: Path) -> None:
    """Foreign Hosts, cross-origin posts of every Content-Type and malformed ids, mixed
    with good posts: every hostile request is refused with 4xx, only good posts count."""
    chance = random.Random(5)
    hosts = ["evil.example", "evil.example:80", "127.0.0.1.nip.io", "[::1", "localhost.evil"]
    origins = ["https://evil.example", "null", "http://127.0.0.1.evil.example"]
    kinds = [None, "text/plain", "application/json", "application/x-www-form-urlencoded"]
    ids = ["²", "١٢", "9" * 30, "0", "-1", "1e3", "0x10", "12 ", "1" * 5000]
    statuses: dict[int, int] = {}
    accepted = []
    with netwatch(tmp_path, workers=0) as (rig, post):
        port = post.conn.port
        for n in range(600):
            pick = n % 4
            if pick == 0:
                answer = post("POST", "/task", {"n": n}, headers={"Host": chance.choice(hosts)})
            elif pick == 1:
                headers = {"Origin": chance.choice(origins)}
                kind = chance.choice(kinds)
                if kind is None:
                    answer = _post_without_content_type(post, headers)
                else:
                    answer = post("POST", "/task", raw=b'{"n": 1}',
                                  headers={**headers, "Content-Type": kind})
            elif pick == 2:
                answer = post("GET", "/status/" + quote(chance.choice(ids)))
            else:
                answer = post("POST", "/task", {"n": n},
                              headers={"Origin": f"http://127.0.0.1:{port}"})
                if answer[0] == 202:
                    accepted.append(answer[2]["id"])
                statuses[answer[0]] = statuses.get(answer[0], 0) + 1
                continue
            assert 400 <= answer[0] < 500, (n, answer)
            statuses[answer[0]] = statuses.get(answer[0], 0) + 1
        stored = sorted(p["id"] for p in rig.pebbles())
    print(f"barrage: 600 requests, answers {dict(sorted(statuses.items()))}, "
          f"{len(accepted)} accepted, {len(stored)} pebbles stored")
    assert len(accepted) == 150 and stored == sorted(accepted)


# ---------------------------------------------------------------------- CryoCloud's NetWatcher


@pytest.mark.parametrize(("headers", "status"), [
    ({"Host": "evil.example"}, 403),
    ({"Origin": "https://evil.example"}, 403),
    ({"Origin": "https://evil.example", "Content-Type": "text/plain"}, 403),
    ({"Origin": "null"}, 403),
    ({"Content-Length": "ten"}, 400),
    ({}, 202),
])
def test_the_cryocloud_netwatcher_helper_applies_the_same_host_and_origin_rules(
        headers: dict[str, str], status: int) -> None:
    from cryoflow.compat.CryoCloud.Common.netwatcher import NetWatcher

    posted: list[dict[str, Any]] = []
    stop = threading.Event()
    watcher = NetWatcher(0, onAdd=lambda info: posted.append(info) or len(posted),
                         stop_event=stop)
    watcher.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", watcher.port, timeout=10)
        body = b'{"n": 1}'
        conn.putrequest("POST", "/task", skip_host="Host" in headers)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        answer = conn.getresponse()
        reply = json.loads(answer.read())
        conn.close()
    finally:
        stop.set()
        watcher.join(10)
    assert answer.status == status, reply
    assert posted == ([{"n": 1}] if status == 202 else [])


def test_the_cryocloud_netwatcher_bound_beyond_loopback_serves_any_host_name() -> None:
    from cryoflow.compat.CryoCloud.Common.netwatcher import NetWatcher

    stop = threading.Event()
    watcher = NetWatcher(0, onAdd=lambda info: 1, stop_event=stop, host="0.0.0.0")
    watcher.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", watcher.port, timeout=10)
        conn.request("POST", "/task", body=b'{"n": 1}', headers={"Host": "ingest.example"})
        assert conn.getresponse().status == 202
        conn.close()
    finally:
        stop.set()
        watcher.join(10)
