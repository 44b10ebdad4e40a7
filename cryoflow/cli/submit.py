"""``cryoflow submit SPEC``, ``get ID``, ``cancel ID``, ``serve``: workflows on a head.

``cryoflow serve`` starts a head that accepts function-spec workflows and serves
external executors (like a ColonyOS server); with ``--containers`` it also runs the
built-in container executor (:mod:`cryoflow.colony.containers`). The others talk
to a running head's REST API (``--url``, default ``$CRYOFLOW_URL``; the token from ``--token`` or
``$CRYOFLOW_API_TOKEN``), as ColonyOS's ``colonies workflow submit`` and ``colonies
workflow get`` do. ``submit`` prints the new workflow's id; ``get`` prints the workflow
and every process's state (``--json`` for the raw document).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryoflow.errors import CryoflowError

URL_ENV = "CRYOFLOW_URL"
TOKEN_ENV = "CRYOFLOW_API_TOKEN"
TIMEOUT_S = 30.0
WORKFLOW_KEYS = ("workflowid", "name", "state", "submissiontime", "starttime", "endtime",
                 "statedir")
PROCESS_KEYS = ("nodename", "state", "waitingforparents", "processid", "funcname",
                "executortype", "dependencies", "priority", "args", "kwargs",
                "assignedexecutor", "waitingfor", "output", "errors")


class RequestError(CryoflowError):
    """The head could not be reached or refused the request."""


def add_commands(commands: Any) -> None:
    """Add ``submit``, ``get`` and ``cancel`` to the ``cryoflow`` subcommands."""
    submit = commands.add_parser("submit", help="submit a function-spec workflow to a head")
    submit.add_argument("spec", type=Path, help="a JSON file: a list of function specs")
    get = commands.add_parser("get", help="show a submitted workflow and its processes")
    get.add_argument("id", help="the workflow id submit printed")
    get.add_argument("--json", action="store_true", help="print the JSON document")
    cancel = commands.add_parser("cancel", help="cancel a submitted workflow run")
    cancel.add_argument("id", help="the workflow id")
    for parser in (submit, get, cancel):
        parser.add_argument("--url", default=os.environ.get(URL_ENV),
                            help=f"the head's URL (default: ${URL_ENV})")
        parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                            help=f"the head's admin token (default: ${TOKEN_ENV})")
    serve = commands.add_parser("serve", help="serve workflows and executors until Ctrl-C")
    serve.add_argument("--state", type=Path, default=Path(".cryoflow") / "workflows",
                       help="the state folder (default: ./.cryoflow/workflows)")
    serve.add_argument("--http", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="where to listen (default: 127.0.0.1 on a free port)")
    serve.add_argument("--containers", action="store_true",
                       help="also run the built-in container executor (executor type "
                            "container-executor) on the Docker daemon of $DOCKER_HOST")
    serve.set_defaults(handler=do_serve)
    submit.set_defaults(handler=do_submit)
    get.set_defaults(handler=do_get)
    cancel.set_defaults(handler=do_cancel)


def do_submit(args: argparse.Namespace) -> int:
    try:
        spec = json.loads(args.spec.read_text())
    except (OSError, ValueError) as exc:
        raise RequestError(f"cannot read {args.spec}: {exc}") from exc
    answer = request(args, "POST", "api/v1/workflows", {"spec": spec})
    print(answer["workflowid"])
    return 0


def do_serve(args: argparse.Namespace) -> int:
    from cryoflow.colony.server import ColonyServer

    host, _, port = args.http.rpartition(":")
    if not host or not port.isdigit():
        raise RequestError(f"--http {args.http!r}: write HOST:PORT, e.g. 127.0.0.1:8080")
    admin = os.environ.get(TOKEN_ENV)
    server = ColonyServer(args.state, host=host, port=int(port), admin_token=admin).start()
    if args.containers:
        from cryoflow.colony.containers import start_in_thread

        start_in_thread(str(server.url))
    print(f"serving workflows at {server.url}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


def do_get(args: argparse.Namespace) -> int:
    answer = request(args, "GET", f"api/v1/workflows/{args.id}")
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print("\n".join(render(answer)))
    return 0


def do_cancel(args: argparse.Namespace) -> int:
    answer = request(args, "POST", f"api/v1/workflows/{args.id}/cancel", {})
    print(f"{answer['workflowid']} {answer['state']}")
    return 0


def render(workflow: dict[str, Any]) -> list[str]:
    """The workflow, then each process, as ``key  value`` lines."""
    lines = ["Workflow", *_rows(workflow, WORKFLOW_KEYS), "", "Processes"]
    for process in workflow.get("processes", []):
        lines += ["", *_rows(process, PROCESS_KEYS)]
    return lines


def _rows(item: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    width = max(len(k) for k in keys)
    return [f"  {key.ljust(width)}  {_shown(item.get(key))}" for key in keys]


def _shown(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "None"
    return value if isinstance(value, str) else json.dumps(value)


def request(args: argparse.Namespace, method: str, path: str,
            body: Any = None) -> dict[str, Any]:
    """Send one request to the head; :class:`RequestError` with its message if refused."""
    if not args.url:
        raise RequestError(f"give the head's URL with --url (or set ${URL_ENV})")
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(args.url.rstrip("/") + "/" + path, data=data,
                                 headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        raise RequestError(_refusal(exc)) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RequestError(f"cannot reach {args.url}: {exc}") from exc


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(exc.read())
    except (ValueError, OSError):
        return f"the head answered {exc.code} {exc.reason}"
    problems = answer.get("problems") or []
    return "\n".join([str(answer.get("error")), *problems])


def fail(message: str) -> int:
    print(f"cryoflow: {message}", file=sys.stderr)
    return 2
