"""The HTTP service on a real loopback server with a real head, store and inline executor."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apikit import ADMIN_TOKEN, GATE, READ_TOKEN, Served, served, until
from enginekit import graph, node

from cryoflow.api import views
from cryoflow.api.auth import PUBLIC, Tokens
from cryoflow.api.server import check_bind, start_api
from cryoflow.errors import ConfigError

XSS = "<img src=x onerror=alert(1)>"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


# ------------------------------------------------------------------ reading


def test_the_workflow_view_has_layered_nodes_edges_counts_and_a_cursor(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        async with served(tmp_path) as s:
            await s.offer(x=1)
            await s.idle()
            return (await s.get("/api/v1/workflow"))[1]

    view = run(go())
    nodes = {n["name"]: n for n in view["nodes"]}
    assert [(nodes[n]["layer"], nodes[n]["order"]) for n in ("In", "A", "B")] == [
        (0, 0), (1, 0), (2, 0)]
    assert {"from": "A", "to": "B", "run_on": "success"} in view["edges"]
    assert nodes["B"]["counts"] == {"success": 1} and nodes["B"]["status"] == "finished"
    assert view["pebbles"] == {"active": 0, "completed": 1, "failed": 0}
    assert view["cursor"]["seq"] > 0 and view["cursor"]["log_id"] > 0


def test_workflow_counts_each_split_branch_once_and_a_merge_once_per_join(
        tmp_path: Path) -> None:
    g = graph(node("In"), node("S", ("In",), split_on="xs", args={"xs": [1, 2, 3]}),
              node("Each", ("S",)), node("M", ("Each",), merge=True), node("After", ("M",)))

    async def go() -> dict[str, Any]:
        async with served(tmp_path, g) as s:
            await s.offer(x=1)
            await s.idle()
            return (await s.get("/api/v1/workflow"))[1]

    counts = {n["name"]: n["counts"] for n in run(go())["nodes"]}
    assert counts == {"In": {"success": 1}, "S": {"success": 3}, "Each": {"success": 3},
                      "M": {"success": 1}, "After": {"success": 1}}


def test_definition_and_active_views_use_the_cloudmesh_shapes(tmp_path: Path) -> None:
    async def go() -> tuple[Any, Any, Any]:
        async with served(tmp_path) as s:
            pebble = await s.offer(x=7)
            await s.idle()
            return ((await s.get("/api/v1/workflow/definition"))[1],
                    (await s.get("/api/v1/workflow/active"))[1],
                    (await s.get(f"/api/v1/workflow/active?pebble={pebble}"))[1])

    definition, active, one = run(go())
    assert definition["collection"] == "t-flow"
    assert {o["name"]: (o["dependencies"], o["status"]) for o in definition["items"]} == {
        "In": ([], "defined"), "A": (["In"], "defined"), "B": (["A"], "defined")}
    statuses = {o["name"]: o["status"] for o in active["items"]}
    assert statuses == {"In": "finished", "A": "finished", "B": "finished"}
    results = {o["name"]: o["result"] for o in one["items"]}
    assert results["B"] == {"x": 7, "fail": False, "label": None}
    assert one["collection"] == "t-flow-active"
    assert all(o["dependencies"] == [] for o in one["items"])


def test_a_failed_pebble_shows_node_states_outputs_errors_and_jobs(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        async with served(tmp_path) as s:
            pebble = await s.offer(x=3, fail=True)
            await s.idle()
            return (await s.get(f"/api/v1/pebbles/{pebble}"))[1]

    pebble = run(go())
    assert pebble["status"] == {"In": "finished", "A": "error", "B": "skipped"}
    assert pebble["outcome"] == "failed" and pebble["failed_nodes"] == ["A"]
    node_a = next(n for n in pebble["nodes"] if n["name"] == "A")
    assert "asked to fail on 3" in node_a["branches"][0]["error"]
    job_a = next(j for j in pebble["jobs"] if j["node"] == "A")
    assert job_a["outcome"] == "error" and job_a["duration"] >= 0
    assert "RuntimeError" in job_a["error"]


def test_pebbles_are_filtered_and_paged_with_a_cursor(tmp_path: Path) -> None:
    async def go() -> list[Any]:
        async with served(tmp_path) as s:
            for i in range(5):
                await s.offer(x=i, fail=i == 2)
            await s.idle()
            first = (await s.get("/api/v1/pebbles?limit=2"))[1]
            second = (await s.get(f"/api/v1/pebbles?limit=2&after={first['next']}"))[1]
            failed = (await s.get("/api/v1/pebbles?outcome=failed"))[1]
            bad = await s.get("/api/v1/pebbles?limit=0")
            return [first, second, failed, bad]

    first, second, failed, bad = run(go())
    assert [p["id"] for p in first["items"]] == [1, 2] and first["next"] == 2
    assert [p["id"] for p in second["items"]] == [3, 4]
    assert [p["id"] for p in failed["items"]] == [3] and failed["next"] is None
    assert bad[0] == 400 and "limit" in bad[1]["error"]


def test_jobs_are_listed_and_each_has_its_log_lines_and_status_values(tmp_path: Path) -> None:
    async def go() -> list[Any]:
        async with served(tmp_path) as s:
            await s.offer(x="hello")
            await s.idle()
            jobs = (await s.get("/api/v1/jobs?node=A"))[1]
            quoted = "1%2FA%231"
            return [jobs, (await s.get(f"/api/v1/jobs/{quoted}"))[1],
                    (await s.get(f"/api/v1/jobs/{quoted}/logs"))[1],
                    (await s.get(f"/api/v1/jobs/{quoted}/status"))[1],
                    await s.get("/api/v1/jobs/nope%231"),
                    (await s.get("/api/v1/logs?node=A&grep=hello"))[1]]

    jobs, job, logs, status, missing, grep = run(go())
    assert [j["id"] for j in jobs["items"]] == ["1/A#1"]
    assert job["args"]["x"] == "hello"
    assert job["retval"] == {"x": "hello", "fail": False, "label": None}
    assert [line["message"] for line in logs["items"]] == ["gate passed for hello"]
    assert status["channel"] == "A" and status["values"]["progress"] == 90
    assert missing[0] == 404
    assert len(grep["items"]) == 1


def test_workers_and_status_values_show_what_runs_now(tmp_path: Path) -> None:
    async def go() -> list[Any]:
        async with served(tmp_path) as s:
            await s.offer(x=1, gate=str(tmp_path / "open"))
            await until(lambda: _has_running(s))
            workers = (await s.get("/api/v1/workers"))[1]
            status = (await s.get("/api/v1/status"))[1]
            (tmp_path / "open").touch()
            await s.idle()
            return [workers, status]

    workers, status = run(go())
    assert workers["workers"][0]["job_id"] == "1/A#1"
    assert workers["workers"][0]["progress"] == 10
    normal = next(c for c in workers["classes"] if c["class"] == "normal")
    assert normal == {"class": "normal", "capacity": 2, "busy": 1, "free": 1, "utilisation": 0.5}
    assert status["status"]["A"]["progress"] == 10


async def _has_running(s: Served) -> bool:
    return bool((await s.get("/api/v1/jobs?state=running"))[1]["items"]) and bool(
        s.head.progress)


def test_health_and_readiness_answer_without_a_token(tmp_path: Path) -> None:
    async def go() -> list[Any]:
        async with served(tmp_path, token=READ_TOKEN) as s:
            return [await s.get("/healthz"), await s.get("/readyz")]

    assert run(go()) == [(200, {"status": "ok"}), (200, {"status": "ready", "paused": False})]


# ------------------------------------------------------------------ actions


def test_cancelling_an_active_pebble_stops_its_job(tmp_path: Path) -> None:
    async def go() -> tuple[Any, Any]:
        async with served(tmp_path) as s:
            pebble = await s.offer(x=1, gate=str(tmp_path / "never"))
            await until(lambda: _has_running(s))
            answer = await s.post(f"/api/v1/pebbles/{pebble}/cancel", {"reason": "test"})
            await s.idle()
            return answer, (await s.get(f"/api/v1/pebbles/{pebble}"))[1]

    answer, pebble = run(go())
    assert answer == (202, {"pebble_id": 1, "accepted": True})
    assert pebble["outcome"] == "failed" and pebble["status"]["A"] == "error"


def test_cancelling_a_running_job_ends_it_with_outcome_cancel(tmp_path: Path) -> None:
    async def go() -> tuple[Any, Any, Any]:
        async with served(tmp_path) as s:
            await s.offer(x=1, gate=str(tmp_path / "never"))
            await until(lambda: _has_running(s))
            answer = await s.post("/api/v1/jobs/1%2FA%231/cancel")
            await s.idle()
            again = await s.post("/api/v1/jobs/1%2FA%231/cancel")
            return answer, again, (await s.get("/api/v1/jobs/1%2FA%231"))[1]

    answer, again, job = run(go())
    assert answer[0] == 202 and job["outcome"] == "cancel"
    assert again[0] == 409 and "not running" in again[1]["error"]


def test_a_finished_or_unknown_pebble_cannot_be_cancelled(tmp_path: Path) -> None:
    async def go() -> list[Any]:
        async with served(tmp_path) as s:
            await s.offer(x=1)
            await s.idle()
            return [await s.post("/api/v1/pebbles/1/cancel"),
                    await s.post("/api/v1/pebbles/99/cancel"),
                    await s.post("/api/v1/pebbles/abc/cancel"),
                    await s.post("/api/v1/pebbles/%C2%B9/cancel")]

    finished, unknown, malformed, superscript = run(go())
    assert finished[0] == 409 and "already finished" in finished[1]["error"]
    assert unknown == (404, {"error": "there is no pebble 99"})
    assert malformed[0] == 400 and superscript[0] == 400


def test_retry_reruns_a_failed_pebble_and_refuses_one_that_did_not_fail(
        tmp_path: Path) -> None:
    async def go() -> tuple[Any, Any, dict[str, Any]]:
        async with served(tmp_path) as s:
            await s.offer(x=1)
            await s.offer(x=2, fail=True)
            await s.idle()
            refused = await s.post("/api/v1/pebbles/1/retry")
            accepted = await s.post("/api/v1/pebbles/2/retry")
            await s.idle()
            return refused, accepted, s.head.store.pebble(2) or {}

    refused, accepted, pebble = run(go())
    assert refused[0] == 409 and "has not failed" in refused[1]["error"]
    assert accepted[0] == 202
    assert pebble["state"] == "done" and pebble["nodes"]["A"][""]["attempts"] == 2


def test_pausing_holds_queued_jobs_until_resumed(tmp_path: Path) -> None:
    async def go() -> tuple[Any, int, Any]:
        async with served(tmp_path) as s:
            paused = await s.post("/api/v1/workflow/pause", {"paused": True})
            await s.offer(x=1)
            await asyncio.sleep(0.3)
            queued = len((await s.get("/api/v1/jobs?state=queued"))[1]["items"])
            resumed = await s.post("/api/v1/workflow/pause", {"paused": False})
            await s.idle()
            return paused, queued, resumed

    paused, queued, resumed = run(go())
    assert paused == (200, {"paused": True}) and queued == 1
    assert resumed == (200, {"paused": False})


# ------------------------------------------------------------------ security


def routes_of(s: Served) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, with sample path parameters."""
    app = s.api.runner.app
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        found.append((route.method, path.format(pebble_id=1, job_id="1%2FA%231", id="x")))
    return found


def test_every_route_refuses_missing_wrong_and_query_string_tokens(tmp_path: Path) -> None:
    async def go() -> list[tuple[str, str, list[int]]]:
        async with served(tmp_path, token=READ_TOKEN, admin_token=ADMIN_TOKEN) as s:
            await s.offer(x=1)
            await s.idle()
            results = []
            for method, path in routes_of(s):
                if path in PUBLIC:
                    continue
                codes = [await _status(s, method, path, None),
                         await _status(s, method, path, "wrong"),
                         await _status(s, method, f"{path}?token={ADMIN_TOKEN}", None)]
                results.append((method, path, codes))
            return results

    results = run(go())
    assert len(results) >= 18
    for method, path, codes in results:
        assert codes == [401, 401, 401], (method, path)


def test_the_read_token_reads_and_only_the_admin_token_acts(tmp_path: Path) -> None:
    async def go() -> list[tuple[str, str, int, int]]:
        async with served(tmp_path, token=READ_TOKEN, admin_token=ADMIN_TOKEN) as s:
            await s.offer(x=1, fail=True)
            await s.idle()
            results = []
            for method, path in routes_of(s):
                if path == "/api/v1/events":
                    continue
                results.append((method, path, await _status(s, method, path, READ_TOKEN),
                                await _status(s, method, path, ADMIN_TOKEN)))
            return results

    for method, path, read, admin in run(go()):
        # "/x" stands for an id that does not exist: past the tokens, it is not found
        expected = (400, 404) if path.endswith("/x") or "/x/" in path else (200,)
        if method == "GET":
            assert read == admin and read in expected, path
        else:
            assert read == 403, path
            # past the tokens: done, or refused for its (empty) body or state
            assert admin in (200, 201, 202, 400, 409, *expected), path


async def _status(s: Served, method: str, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"paused": False} if path.endswith("/pause") else {}
    kw: dict[str, Any] = {"json": body} if method == "POST" else {}
    async with s.session.request(method, s.url + path.lstrip("/"), headers=headers, **kw) as r:
        return r.status


def test_no_get_route_changes_the_database(tmp_path: Path) -> None:
    async def go() -> tuple[str, str]:
        async with served(tmp_path) as s:
            await s.offer(x=1)
            await s.offer(x=2, fail=True)
            await s.idle()
            before = _db_hash(s.head.store.path)
            for method, path in routes_of(s):
                if method == "GET" and path != "/api/v1/events":
                    allowed = (404,) if path.endswith("/x") else (200,)
                    assert await _status(s, method, path, None) in allowed, path
            return before, _db_hash(s.head.store.path)

    before, after = run(go())
    assert before == after


def _db_hash(db: Path) -> str:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def test_a_non_loopback_address_without_a_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="without a token"):
        check_bind("0.0.0.0", Tokens())
    check_bind("0.0.0.0", Tokens(read="r"))
    check_bind("::1", Tokens())
    check_bind("localhost", Tokens())


def test_start_api_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path) as s:
            with pytest.raises(ConfigError, match="listen on 127.0.0.1"):
                await start_api(s.head, host="0.0.0.0")

    run(go())


def test_a_port_in_use_is_refused_with_a_sentence(tmp_path: Path) -> None:
    async def go() -> int:
        async with served(tmp_path) as s:
            port = int(s.url.rsplit(":", 1)[1].strip("/"))
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
                await start_api(s.head, port=port)
            return len(s.head.listeners)

    assert run(go()) == 1


def test_responses_carry_security_headers_and_no_cors(tmp_path: Path) -> None:
    async def go() -> list[Any]:
        async with served(tmp_path) as s:
            headers = []
            for path in ("/", "/api/v1/workflow", "/nope"):
                async with s.session.get(s.url + path.lstrip("/")) as r:
                    headers.append(r.headers)
            async with s.session.options(s.url + "api/v1/pebbles/1/cancel", headers={
                    "Origin": "https://evil.example",
                    "Access-Control-Request-Method": "POST"}) as r:
                headers.append(r.headers)
            return headers

    for headers in run(go()):
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "Access-Control-Allow-Origin" not in headers


def test_cross_site_posts_and_form_posts_are_refused(tmp_path: Path) -> None:
    async def go() -> list[int]:
        async with served(tmp_path) as s:
            url = s.url + "api/v1/workflow/pause"
            async with s.session.post(url, json={"paused": True},
                                      headers={"Origin": "https://evil.example"}) as r1:
                pass
            async with s.session.post(url, data={"paused": "true"}) as r2:
                pass
            async with s.session.get(s.url + "api/v1/workflow",
                                     headers={"Host": "evil.example"}) as r3:
                pass
            return [r1.status, r2.status, r3.status, int(s.head.paused)]

    assert run(go()) == [403, 415, 403, 0]


# ------------------------------------------------------------------ events


async def _read_until(ws: aiohttp.ClientWebSocketResponse, seq: int) -> list[dict[str, Any]]:
    """Messages until an event with ``seq`` arrives."""
    got: list[dict[str, Any]] = []
    while not any(m["type"] == "event" and m["seq"] >= seq for m in got):
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        got += json.loads(msg.data)
    return got


def _seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if m["type"] == "event"]


def test_a_websocket_client_that_reconnects_with_its_cursor_misses_nothing(
        tmp_path: Path) -> None:
    async def go() -> tuple[list[int], list[int], list[int], list[str]]:
        async with served(tmp_path) as s:
            async with s.session.ws_connect(s.url + "api/v1/events") as ws:
                start = json.loads((await ws.receive(timeout=5)).data)[0]["seq"]
                for i in range(3):
                    await s.offer(x=i)
                await s.idle()
                first = await _read_until(ws, s.api.context.feed.seq)
            last = _seqs(first)[-1]
            log_id = max(m["id"] for m in first if m["type"] == "log")
            for i in range(3):
                await s.offer(x=10 + i)
            await s.idle()
            url = f"{s.url}api/v1/events?after={last}&after_log={log_id}"
            async with s.session.ws_connect(url) as ws:
                more = [asyncio.ensure_future(s.offer(x=20 + i)) for i in range(3)]
                await asyncio.gather(*more)
                await s.idle()
                await asyncio.sleep(0.3)
                second = await _read_until(ws, s.api.context.feed.seq)
            stored = [e["seq"] for e in s.head.store.events(after_seq=start, limit=10_000)]
            lines = [m["id"] for m in first + second if m["type"] == "log"]
            return _seqs(first), _seqs(second), stored, lines

    first, second, stored, lines = run(go())
    assert first + second == stored
    assert len(set(lines)) == len(lines) == 18  # 9 pebbles, A and B log one line each


def test_a_client_too_slow_for_the_feed_is_closed_with_a_cursor_to_resume_from(
        tmp_path: Path) -> None:
    async def go() -> tuple[int | None, str, list[int], list[int]]:
        async with served(tmp_path) as s:
            s.api.context.hub.max_queue = 3
            async with s.session.ws_connect(s.url + "api/v1/events") as ws:
                start = json.loads((await ws.receive(timeout=5)).data)[0]["seq"]
                for i in range(4):
                    await s.offer(x=i)
                await s.idle()
                got: list[dict[str, Any]] = []
                while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
                    got += json.loads(msg.data)
                code, reason = msg.data, msg.extra or ""  # the close frame's code and reason
            s.api.context.hub.max_queue = 10_000
            cursor = reason.split("after=")[1].split("&")[0]
            async with s.session.ws_connect(f"{s.url}api/v1/events?after={cursor}") as ws:
                rest = await _read_until(ws, s.api.context.feed.seq)
            stored = [e["seq"] for e in s.head.store.events(after_seq=start, limit=10_000)]
            return code, reason, _seqs(got) + _seqs(rest), stored

    code, reason, seen, stored = run(go())
    assert code == 4000 and reason.startswith("too slow; reconnect with after=")
    assert seen == stored


def test_the_event_stream_carries_status_values_and_progress(tmp_path: Path) -> None:
    async def go() -> list[dict[str, Any]]:
        async with served(tmp_path) as s:
            async with s.session.ws_connect(s.url + "api/v1/events") as ws:
                await s.offer(x=1, gate=str(tmp_path / "open"))
                await until(lambda: _has_running(s))
                await asyncio.sleep(0.4)
                (tmp_path / "open").touch()
                await s.idle()
                return await _read_until(ws, s.api.context.feed.seq)

    messages = run(go())
    assert {"type": "progress", "job_id": "1/A#1", "value": 10} in messages
    assert any(m["type"] == "status" and m["channel"] == "A" for m in messages)


def test_a_plain_get_on_the_event_route_asks_for_a_websocket(tmp_path: Path) -> None:
    async def go() -> tuple[int, Any]:
        async with served(tmp_path) as s:
            return await s.get("/api/v1/events")

    status, body = run(go())
    assert status == 426 and "WebSocket" in body["error"]


def test_a_browser_passes_its_token_as_a_websocket_subprotocol(tmp_path: Path) -> None:
    async def go() -> tuple[int, str]:
        async with served(tmp_path, token=READ_TOKEN) as s:
            encoded = base64.urlsafe_b64encode(READ_TOKEN.encode()).decode().rstrip("=")
            async with s.session.ws_connect(s.url + "api/v1/events",
                                            protocols=("cryoflow", f"bearer.{encoded}")) as ws:
                first = json.loads((await ws.receive(timeout=5)).data)[0]["type"]
            try:
                await s.session.ws_connect(s.url + "api/v1/events", protocols=("cryoflow",))
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status, first
            return 0, first

    assert run(go()) == (401, "snapshot")


# ------------------------------------------------------------------ metrics


def test_metrics_show_states_nodes_durations_queues_retries_and_workers(
        tmp_path: Path) -> None:
    g = graph(node("In", module="cmdline"),
              node("A", ("In",), module="gate", module_ref=GATE, retries=1,
                   args={"fail": {"output": "In.fail", "default": False}}))

    async def go() -> str:
        async with served(tmp_path, g) as s:
            await s.offer(fail=False)
            await s.offer(fail=True)
            await s.idle()
            return str((await s.get("/metrics"))[1])

    text = run(go())
    assert 'cryoflow_pebbles{state="completed"} 1' in text
    assert 'cryoflow_pebbles{state="failed"} 1' in text
    assert 'cryoflow_node_branches{node="A",state="error"} 1' in text
    assert 'cryoflow_jobs_finished_total{node="A",outcome="error"} 2' in text
    assert 'cryoflow_job_retries_total{node="A"} 1' in text
    assert 'cryoflow_job_duration_seconds_count{node="A"} 3' in text
    assert 'cryoflow_job_duration_seconds_bucket{node="A",le="+Inf"} 3' in text
    assert 'cryoflow_queue_depth{class="normal"} 0' in text
    assert 'cryoflow_workers{class="normal"} 2' in text
    assert 'cryoflow_worker_utilisation{class="normal"} 0.0' in text
    assert "cryoflow_oldest_active_pebble_age_seconds 0.0" in text
    assert "# TYPE cryoflow_job_duration_seconds histogram" in text


# ------------------------------------------------------------------ pure views


def test_node_status_prefers_running_then_pending_then_error() -> None:
    assert views.status_of_counts({"running": 1, "error": 2}) == "running"
    assert views.status_of_counts({"waiting": 1, "success": 2}) == "pending"
    assert views.status_of_counts({"timeout": 1, "success": 2}) == "error"
    assert views.status_of_counts({"success": 2, "skipped": 1}) == "finished"
    assert views.status_of_counts({"skipped": 1}) == "skipped"
    assert views.status_of_counts({}) == "defined"


def test_an_output_may_style_its_node_but_only_with_safe_values() -> None:
    shown = views.display_of({"color": "green", "shape": "circle", "label": XSS, "value": [1]})
    assert shown == {"color": "green", "shape": "circle", "label": XSS, "value": [1]}
    assert views.display_of({"color": "url(http://x)", "shape": "<svg>"}) is None
    assert views.display_of("not a dict") is None
    assert len(views.display_of({"value": "x" * 1000})["value"]) == views.MAX_VALUE_CHARS


def test_job_ids_parse_into_pebble_node_branch_and_attempt() -> None:
    assert views.parse_job_id("12/Wind/3.1#2") == (12, "Wind", "3.1", 2)
    assert views.parse_job_id("12/H@Wind#1") == (12, "H@Wind", "", 1)
    assert views.parse_job_id("nope") is None
    assert views.parse_job_id("¹/A#1") is None


def test_secret_looking_arguments_are_redacted() -> None:
    args = {"password": "p", "nested": {"api_key": "k", "ok": 1}, "list": [{"token": "t"}]}
    assert views.redact(args) == {"password": "***", "nested": {"api_key": "***", "ok": 1},
                                  "list": [{"token": "***"}]}


def test_layers_put_each_node_below_its_deepest_parent() -> None:
    g = graph(node("In", module="cmdline"), node("A", ("In",)), node("B", ("In",)),
              node("C", ("A", "B")), node("D", ("In", "C")))
    assert views.layers(g) == {"In": (0, 0), "A": (1, 0), "B": (1, 1), "C": (2, 0),
                               "D": (3, 0)}
