"""The netwatcher: a real aiohttp server on loopback, a real head and store.

Every answer is checked against the store: a 202 id is a committed pebble, a refusal
leaves the store unchanged.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from watchkit import ROOT, Rig, input_node, still, wait_for, watch_graph

from cryoflow.errors import InputError
from cryoflow.graph.expr import parse_restriction
from cryoflow.store import Store
from cryoflow.watch.netstatus import status_of
from cryoflow.watch.netwatch import NetwatchConfig, NetWatcher

SCHEMA = {
    "type": "object",
    "required": ["product"],
    "properties": {
        "product": {"type": "string"},
        "options": {"type": "object", "properties": {"level": {"type": "integer"}}},
    },
}
SERVER = ROOT / "tests" / "data" / "watch_modules" / "serve_netwatcher.py"


class Client:
    """One keep-alive connection; answers as ``(status, headers, json body)``."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.token = token

    def __call__(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> tuple[int, Any, Any]:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=data, headers=sent)
        response = self.conn.getresponse()
        text = response.read()
        return response.status, response.headers, json.loads(text) if text else None

    def close(self) -> None:
        self.conn.close()


@contextmanager
def served(rig: Rig, **args: Any) -> Iterator[tuple[NetWatcher, Client]]:
    """A NetWatcher for the rig's input node ``In`` on a free loopback port."""
    config = NetwatchConfig.from_args("In", {"port": 0, **args}, {})
    watcher = NetWatcher(config, rig.handler("In"))
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), name="netwatcher")
    thread.start()
    try:
        assert watcher.ready.wait(10), "the server did not start"
        assert watcher.port is not None
        client = Client(watcher.port, args.get("token"))
        try:
            yield watcher, client
        finally:
            client.close()
    finally:
        stop.set()
        thread.join(10)


@contextmanager
def netwatch(tmp_path: Path, *, workers: int = 2, restrictions: tuple[Any, ...] = (),
             max_pages: int | None = None, **args: Any) -> Iterator[tuple[Rig, Client]]:
    g = watch_graph(input_node("In", "netwatcher", {}, restrictions=restrictions))
    with Rig(g, tmp_path / "state", workers=workers, run_inputs=False,
             max_pages=max_pages) as rig, served(rig, **args) as (_, client):
        yield rig, client


def error_of(answer: tuple[int, Any, Any]) -> tuple[int, str]:
    status, _, body = answer
    assert isinstance(body, dict) and set(body) == {"error"}, body
    return status, body["error"]


# ---------------------------------------------------------------------- accepting


def test_a_post_is_answered_202_only_once_its_pebble_is_committed(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        status, _, body = post("POST", "/task", {"product": "S1A_0001", "value": 3})
        assert status == 202 and set(body) == {"id"}
        pebble = rig.pebble(body["id"])
        assert pebble is not None and pebble["item"] == {"product": "S1A_0001", "value": 3}


def test_any_post_path_is_a_task_as_in_cryocloud(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        status, _, body = post("POST", "/anything/else", {"n": 1})
        assert status == 202 and rig.pebble(body["id"]) is not None


def test_the_microservice_pattern_posts_then_polls_status_until_completed(
        tmp_path: Path) -> None:
    with netwatch(tmp_path, schema=SCHEMA) as (_, post):
        status, _, body = post("POST", "/task", {"product": "p1", "value": "hello"})
        assert status == 202

        def completed() -> Any:
            state = post("GET", f"/status/{body['id']}")
            return state[2] if "completed" in state[2] else None

        result = wait_for(completed, what="the status to say completed")
        assert result["pebbleid"] == body["id"] and result["outcome"] == "completed"
        assert result["retval"] == {"value": "hello"}
        assert result["retval_full"]["PIn"] == {"value": "hello"}
        assert result["progress"]["PIn"] == {"status": "done", "outcome": "success"}
        closed = post("GET", f"/close/{body['id']}")
        assert closed[:1] == (200,) and closed[2] == {"id": body["id"], "closed": True}


def test_status_before_completion_has_no_completed_key(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (_, post):
        pebble_id = post("POST", "/task", {"n": 1})[2]["id"]
        status, _, body = post("GET", f"/status/{pebble_id}")
        assert status == 200 and body["state"] == "active" and "completed" not in body


def test_status_of_many_ids_at_once_names_unknown_ones_null(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (_, post):
        ids = [post("POST", "/task", {"n": n})[2]["id"] for n in range(3)]
        status, _, body = post("POST", "/status", {"ids": [*ids, 999]})
        assert status == 200 and body["999"] is None
        assert [body[str(i)]["pebbleid"] for i in ids] == ids
        assert error_of(post("POST", "/status", ["one"]))[0] == 400


def test_an_idempotency_key_returns_the_same_id_without_a_second_pebble(
        tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        key = {"Idempotency-Key": "order-17"}
        first = post("POST", "/task", {"n": 1}, headers=key)
        again = post("POST", "/task", {"n": 1}, headers=key)
        other = post("POST", "/task", {"n": 1}, headers={"Idempotency-Key": "order-18"})
        assert first[0] == again[0] == other[0] == 202
        assert first[2]["id"] == again[2]["id"] != other[2]["id"]
        assert len(rig.pebbles()) == 2
        assert error_of(post("POST", "/task", {"n": 1},
                             headers={"Idempotency-Key": "with space"}))[0] == 400


def test_the_schema_is_served_as_given(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, schema=SCHEMA) as (_, post):
        assert post("GET", "/schema")[::2] == (200, SCHEMA)


def test_a_schema_file_is_read_and_a_bad_schema_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    assert NetwatchConfig.from_args("In", {"port": 0, "schema": str(path)}).schema == SCHEMA
    with pytest.raises(InputError, match="'schema' cannot be used.*not a valid JSON Schema"):
        NetwatchConfig.from_args("In", {"port": 0, "schema": {"type": 12}})
    with pytest.raises(InputError, match="'schema' cannot be used.*cannot be read"):
        NetwatchConfig.from_args("In", {"port": 0, "schema": str(tmp_path / "none.json")})


# ---------------------------------------------------------------------- refusing


BAD_BODIES = {
    "truncated": (b'{"product": ', "malformed JSON: Expecting value: line 1 column 13"),
    "trailing comma": (b'{"a": 1,}', "malformed JSON"),
    "empty": (b"", "malformed JSON"),
    "NaN": (b'{"a": NaN}', "NaN is not a JSON number"),
    "Infinity": (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
    "huge float": (b'{"a": 1e400}', "too large"),
    "5000 digits": (b'{"a": ' + b"9" * 5000 + b"}", "4300 digits"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    "70 levels": (b'{"a":' * 70 + b"1" + b"}" * 70, "nested deeper than 64"),
    "duplicate key": (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    "not UTF-8": (b'{"a": "\xff"}', "not UTF-8"),
    "an array": (b"[1, 2]", "must be a JSON object, not an array"),
    "a string": (b'"hello"', "must be a JSON object, not a string"),
    "null": (b"null", "must be a JSON object, not null"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_bad_body_is_refused_400_with_the_reason_and_nothing_is_stored(
        tmp_path: Path, case: str) -> None:
    raw, reason = BAD_BODIES[case]
    with netwatch(tmp_path, workers=0, max_bytes=300_000) as (rig, post):
        status, message = error_of(post("POST", "/task", raw=raw))
        assert status == 400 and reason in message
        assert rig.pebbles() == []
        assert post("POST", "/task", {"still": "healthy"})[0] == 202


def test_a_schema_violation_is_refused_400_naming_the_failing_path(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, schema=SCHEMA) as (rig, post):
        status, message = error_of(post("POST", "/task",
                                        {"product": "p", "options": {"level": "high"}}))
        assert status == 400
        assert "at $.options.level: 'high' is not of type 'integer'" in message
        status, message = error_of(post("POST", "/task", {"other": 1}))
        assert "at $: 'product' is a required property" in message
        assert rig.pebbles() == []


def test_a_body_over_max_bytes_is_refused_413_with_or_without_a_length(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, max_bytes=1000) as (rig, post):
        big = json.dumps({"blob": "x" * 2000}).encode()
        assert error_of(post("POST", "/task", raw=big))[0] == 413
        chunked = Client(post.conn.port)
        chunked.conn.putrequest("POST", "/task")
        chunked.conn.putheader("Transfer-Encoding", "chunked")
        chunked.conn.putheader("Content-Type", "application/json")
        chunked.conn.endheaders()
        chunked.conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
        response = chunked.conn.getresponse()
        assert response.status == 413 and "larger than 1000" in response.read().decode()
        chunked.close()
        assert rig.pebbles() == []


def test_a_body_that_is_not_json_by_its_content_type_is_refused_415(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        status, message = error_of(post("POST", "/task", raw=b'{"a": 1}',
                                        headers={"Content-Type": "text/plain"}))
        assert status == 415 and "application/json" in message
        assert post("POST", "/task", raw=b'{"a": 1}',
                    headers={"Content-Type": "application/vnd.order+json"})[0] == 202
        assert len(rig.pebbles()) == 1


ROUTES = [("POST", "/task", {"n": 1}), ("GET", "/status/1", None), ("POST", "/status", [1]),
          ("GET", "/schema", None), ("GET", "/close/1", None)]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_refuses_a_missing_or_wrong_token_with_401(
        tmp_path: Path, method: str, path: str, body: Any) -> None:
    secret = "s3cret-token-for-tests"
    with netwatch(tmp_path, workers=0, token=secret) as (rig, post):
        anonymous = Client(post.conn.port)
        assert error_of(anonymous(method, path, body)) == (
            401, "a token is required: send 'Authorization: Bearer <token>'")
        assert error_of(anonymous(method, f"{path}?token={secret}", body))[0] == 401
        wrong = Client(post.conn.port, token="not-the-token")
        assert error_of(wrong(method, path, body)) == (401, "the token is wrong")
        assert rig.pebbles() == []
        if path != "/task":
            post("POST", "/task", {"n": 0})
        assert post(method, path, body)[0] in (200, 202)
        anonymous.close()
        wrong.close()


def test_unknown_ids_and_paths_are_404_and_no_file_is_ever_served(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (_, post):
        for path in ("/status/999", "/close/999", "/", "/index.html",
                     "/files/..%2f..%2fetc/passwd", "/static/../../etc/passwd"):
            assert error_of(post("GET", path))[0] == 404, path
        assert error_of(post("GET", "/status/abc"))[0] == 400  # not an id at all
        assert error_of(post("PUT", "/task", {"n": 1})) == (
            405, "PUT is not allowed here; use GET, OPTIONS, POST")


def test_status_is_only_given_for_pebbles_of_this_input(tmp_path: Path) -> None:
    g = watch_graph(input_node("In", "netwatcher", {}), input_node("Other", "netwatcher", {}))
    with Rig(g, tmp_path / "state", workers=0, run_inputs=False) as rig:
        other = rig.call(lambda: rig.handler("Other").submit({"n": 1}))
        with served(rig) as (_, post):
            assert error_of(post("GET", f"/status/{other.result(10)}"))[0] == 404


def test_backpressure_answers_503_with_retry_after_over_max_pending(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, max_pending=5, retry_after=7) as (rig, post):
        answers = [post("POST", "/task", {"n": n}) for n in range(8)]
        assert [a[0] for a in answers] == [202] * 5 + [503] * 3
        assert answers[-1][1]["Retry-After"] == "7"
        assert "5 pebbles are unfinished (the limit is 5)" in answers[-1][2]["error"]
        assert len(rig.pebbles()) == 5


def test_a_restriction_on_the_input_node_answers_503_until_it_holds(tmp_path: Path) -> None:
    gate = (parse_restriction("Gate:open", "==1"),)
    with netwatch(tmp_path, workers=0, restrictions=gate) as (rig, post):
        status, headers, body = post("POST", "/task", {"n": 1})
        assert status == 503 and headers["Retry-After"] == "1"
        assert "restriction" in body["error"] and rig.pebbles() == []
        rig.set_status("Gate", "open", 1)
        assert post("POST", "/task", {"n": 1})[0] == 202


def test_a_store_that_cannot_commit_answers_503_and_keeps_serving(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, max_pages=40, max_bytes=300_000) as (rig, post):
        blob = "x" * 100_000
        answers = [post("POST", "/task", {"blob": blob}) for _ in range(12)]
        refused = [a for a in answers if a[0] == 503]
        assert refused, [a[0] for a in answers]
        assert "state store" in refused[0][2]["error"] and refused[0][1]["Retry-After"]
        accepted = [a[2]["id"] for a in answers if a[0] == 202]
        assert sorted(p["id"] for p in rig.pebbles()) == sorted(accepted)
        assert post("GET", "/schema")[0] == 200


def test_a_non_loopback_host_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="host' is 0.0.0.0, which other machines can reach"):
        NetwatchConfig.from_args("In", {"port": 0, "host": "0.0.0.0"}, {})
    config = NetwatchConfig.from_args("In", {"port": 0, "host": "0.0.0.0"},
                                      {"CRYOFLOW_NETWATCHER_TOKEN": "from-env"})
    assert config.token == "from-env"
    g = watch_graph(input_node("In", "netwatcher", {"port": 0, "host": "::"}))
    with Rig(g, tmp_path / "state") as rig:
        errors = wait_for(rig.input_errors, what="the refusal")
    assert "other machines can reach" in errors[0]


def test_cors_headers_are_sent_only_to_allowed_origins(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, cors="https://ok.example") as (_, post):
        ok = post("OPTIONS", "/task", headers={"Origin": "https://ok.example"})
        assert ok[0] == 204 and ok[1]["Access-Control-Allow-Origin"] == "https://ok.example"
        assert "Idempotency-Key" in ok[1]["Access-Control-Allow-Headers"]
        evil = post("OPTIONS", "/task", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in evil[1]
    with netwatch(tmp_path / "plain", workers=0) as (_, post):
        plain = post("POST", "/task", {"n": 1}, headers={"Origin": "https://ok.example"})
        assert plain[0] == 403 and "Access-Control-Allow-Origin" not in plain[1]


def test_a_slow_loris_client_is_dropped_and_does_not_block_others(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0, header_timeout=0.5) as (rig, post):
        slow = socket.create_connection(("127.0.0.1", post.conn.port), timeout=5)
        slow.sendall(b"POST /task HTTP/1.1\r\nHost: x\r\nContent-")
        started = time.monotonic()
        assert [post("POST", "/task", {"n": n})[0] for n in range(20)] == [202] * 20
        assert time.monotonic() - started < 2.0
        assert slow.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 4.0
        slow.close()
        assert len(rig.pebbles()) == 20


def test_the_module_serves_through_the_input_runner(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    g = watch_graph(input_node("In", "netwatcher",
                               {"port": port, "schema": {"default": SCHEMA}}))
    with Rig(g, tmp_path / "state") as rig:
        client = Client(port)
        answer = wait_for(lambda: _try_post(client), what="the module's server")
        assert answer[0] == 202
        assert error_of(client("POST", "/task", {"value": 2}))[0] == 400
        wait_for(lambda: rig.pebbles() and rig.pebbles()[0]["state"] == "done",
                 what="the pebble to finish")
        client.close()


def test_a_dirwatcher_and_a_netwatcher_feed_one_graph_together(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    g = watch_graph(input_node("Files", "dirwatcher", {"src": str(src), "stabilize": 0.2}),
                    input_node("Posts", "netwatcher", {"port": port}))
    with Rig(g, tmp_path / "state") as rig:
        client = Client(port)
        assert wait_for(lambda: _try_post(client), what="the netwatcher")[0] == 202
        (src / "scene.dat").write_bytes(b"scene")
        wait_for(lambda: len(rig.pebbles()) == 2 and
                 all(p["outcome"] == "completed" for p in rig.pebbles()), what="both pebbles")
        assert sorted(p["input_node"] for p in rig.pebbles()) == ["Files", "Posts"]
        client.close()


def _try_post(client: Client) -> tuple[int, Any, Any] | None:
    try:
        return client("POST", "/task", {"product": "p", "value": 1})
    except ConnectionRefusedError:
        client.close()  # not listening yet: the next call connects afresh
        return None


# ---------------------------------------------------------------------- crash


def test_a_kill_9_between_posts_loses_no_acknowledged_pebble(tmp_path: Path) -> None:
    state = tmp_path / "state"
    acknowledged: dict[str, int] = {}
    offered = [f"probe-{n}" for n in range(400)]
    with _server(state) as (process, port):
        client = Client(port)
        for probe_id in offered:
            if len(acknowledged) == 150:
                os.kill(process.pid, signal.SIGKILL)
            try:
                status, _, body = client("POST", "/task", {"probe_id": probe_id},
                                         headers={"Idempotency-Key": probe_id})
            except (ConnectionError, http.client.HTTPException, OSError):
                break
            assert status == 202
            acknowledged[probe_id] = body["id"]
        client.close()
    with Store.open(state, workflow="t") as store:
        stored = {p["item"]["probe_id"]: p["id"] for p in store.pebbles(limit=10_000)}
    assert len(acknowledged) >= 150
    assert all(stored.get(key) == pebble_id for key, pebble_id in acknowledged.items())
    with _server(state) as (_, port):
        client = Client(port)
        for probe_id in offered:
            status, _, body = client("POST", "/task", {"probe_id": probe_id},
                                     headers={"Idempotency-Key": probe_id})
            assert status == 202
            assert acknowledged.get(probe_id, body["id"]) == body["id"]
        client.close()
    with Store.open(state, workflow="t") as store:
        assert len(store.pebbles(limit=10_000)) == len(offered)


@pytest.mark.parametrize("point", ["post_parsed_before_commit", "post_committed_before_ack"])
def test_a_crash_around_the_commit_loses_nothing_and_a_retry_makes_no_duplicate(
        tmp_path: Path, point: str) -> None:
    state = tmp_path / "state"
    answers = []
    with _server(state, failpoints=f"{point}=crash@3") as (process, port):
        client = Client(port)
        for n in range(3):
            try:
                answers.append(client("POST", "/task", {"probe_id": f"p{n}"},
                                      headers={"Idempotency-Key": f"p{n}"})[2]["id"])
            except (ConnectionError, http.client.HTTPException):
                break
        client.close()
        assert process.wait(10) == 137
    assert len(answers) == 2
    with Store.open(state, workflow="t") as store:
        stored = [p["item"]["probe_id"] for p in store.pebbles()]
    assert stored == (["p0", "p1"] if point == "post_parsed_before_commit"
                      else ["p0", "p1", "p2"])
    with _server(state) as (_, port):
        client = Client(port)
        retried = client("POST", "/task", {"probe_id": "p2"}, headers={"Idempotency-Key": "p2"})
        assert retried[0] == 202
        client.close()
    with Store.open(state, workflow="t") as store:
        assert [p["item"]["probe_id"] for p in store.pebbles()] == ["p0", "p1", "p2"]


@contextmanager
def _server(state: Path, failpoints: str = "") -> Iterator[tuple[subprocess.Popen[str], int]]:
    env = {**os.environ, "CRYOFLOW_FAILPOINTS": failpoints}
    process = subprocess.Popen([sys.executable, str(SERVER), str(state)],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        yield process, int(line.split()[1])
    finally:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_concurrent_posters_all_get_distinct_committed_ids(tmp_path: Path) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        ids: list[int] = []
        lock = threading.Lock()

        def poster(offset: int) -> None:
            client = Client(post.conn.port)
            for n in range(40):
                status, _, body = client("POST", "/task", {"n": offset * 100 + n})
                assert status == 202
                with lock:
                    ids.append(body["id"])
            client.close()

        threads = [threading.Thread(target=poster, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(set(ids)) == 320
        assert still(lambda: {p["id"] for p in rig.pebbles()} == set(ids), for_s=0.1)


def test_a_status_lists_split_outputs_in_branch_order_and_the_last_node_as_retval() -> None:
    def state(output: Any, finished: float | None = None) -> dict[str, Any]:
        stats = {} if finished is None else {"finished": finished}
        return {"status": "done", "outcome": "success", "output": output, "stats": stats}

    pebble = {"id": 4, "state": "done", "outcome": "completed", "failed_nodes": [],
              "nodes": {"In": {"": state({"n": 1})},
                        "Split": {"": {"status": "split"},
                                  **{str(i): state(i) for i in (10, 2, 1)}},
                        "Last": {"": state({"done": True}, finished=5.0)},
                        "Early": {"": state({"early": True}, finished=2.0)}}}
    status = status_of(pebble, ["In", "Split", "Last", "Early"], now=9.0)
    assert status["retval_full"]["Split"] == [1, 2, 10]
    assert status["retval"] == {"done": True}
    assert status["progress"]["Split"] == {"status": "split", "outcome": None,
                                           "branches": 3, "branches_done": 3}
    assert status["completed"] is True and status["ts"] == 9.0


def test_the_netwatcher_lets_its_input_stop_at_once_while_the_heads_loop_is_busy(
        tmp_path: Path) -> None:
    # `ccworkflow run` stops its inputs from the head's loop, so the input's thread must
    # not wait for the server (which runs on that loop) to close.
    g = watch_graph(input_node("In", "netwatcher", {}))
    with Rig(g, tmp_path / "state", workers=0, run_inputs=False) as rig:
        watcher = NetWatcher(NetwatchConfig.from_args("In", {"port": 0}, {}), rig.handler("In"))
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), name="netwatcher")
        thread.start()
        assert watcher.ready.wait(10) and watcher.port is not None
        status, _, body = Client(watcher.port)("POST", "/task", {"n": 1})
        assert status == 202 and [p["id"] for p in rig.pebbles()] == [body["id"]]
        assert rig.loop is not None
        rig.loop.call_soon_threadsafe(time.sleep, 1.5)  # the loop is busy, as in a join
        time.sleep(0.1)
        stop.set()
        thread.join(0.8)
        assert not thread.is_alive()
        wait_for(lambda: not _accepts(watcher.port), what="the port to close")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
