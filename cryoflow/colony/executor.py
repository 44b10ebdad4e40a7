"""A small executor client for the head's REST API: pull processes, run them, report.

Executors may be written in any language; this one shows the loop::

    from cryoflow.colony.executor import ExecutorClient

    def gen(process):
        return [1, 2, 3]

    def total(process):
        return [sum(process["input"])]

    ExecutorClient(url, type="wf-executor", name="py-1").serve({"gen": gen, "sum": total})

Each function gets the process (``funcname``, ``args``, ``kwargs``, ``input`` — its
parents' outputs joined — and ``processid``) and returns the output list; an exception
fails the process with its message. ``add_child`` grows the running workflow.
Standard library only (``urllib``).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from cryoflow.errors import CryoflowError

TOKEN_ENV = "CRYOFLOW_API_TOKEN"
SLACK_S = 10.0
"""How much longer than the long-poll timeout a request may take."""

Function = Callable[[Mapping[str, Any]], Any]


class ExecutorError(CryoflowError):
    """The head refused a request, or cannot be reached."""


class ExecutorClient:
    """One external executor of ``type`` talking to the head at ``url``."""

    def __init__(self, url: str, *, type: str, name: str,
                 functions: tuple[str, ...] = (), token: str | None = None) -> None:
        self.url = url.rstrip("/") + "/"
        self.type = type
        self.name = name
        self.functions = functions
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.id: str | None = None

    def register(self) -> str:
        """Register with the head; return (and keep) the executor id."""
        answer = self._post("api/v1/executors", {"name": self.name, "type": self.type,
                                                 "functions": list(self.functions)})
        self.id = str(answer["executorid"])
        return self.id

    def assign(self, timeout_s: float = 10.0) -> dict[str, Any] | None:
        """The next process for this executor, or None when none came within ``timeout_s``."""
        answer = self._post(f"api/v1/executors/{self._id()}/assign", {"timeout": timeout_s},
                            wait_s=timeout_s)
        return answer.get("process")

    def close(self, process: Mapping[str, Any], output: Any) -> None:
        self._post(f"api/v1/processes/{process['processid']}/close",
                   {"executorid": self._id(), "output": output})

    def fail(self, process: Mapping[str, Any], errors: list[str]) -> None:
        self._post(f"api/v1/processes/{process['processid']}/fail",
                   {"executorid": self._id(), "errors": errors})

    def add_child(self, process: Mapping[str, Any], spec: Mapping[str, Any],
                  insert: bool = False) -> None:
        """Add ``spec`` below the running process (between it and its children with insert)."""
        self._post(f"api/v1/processes/{process['processid']}/children",
                   {"executorid": self._id(), "spec": dict(spec), "insert": insert})

    def serve(self, functions: Mapping[str, Function], *, stop: threading.Event | None = None,
              timeout_s: float = 10.0) -> None:
        """Register, then take, run and close processes until ``stop`` is set."""
        self.functions = self.functions or tuple(functions)
        self.register()
        while stop is None or not stop.is_set():
            process = self.assign(timeout_s)
            if process is not None:
                self.run(process, functions)

    def run(self, process: Mapping[str, Any], functions: Mapping[str, Function]) -> None:
        """Run one process with the function its ``funcname`` names; close or fail it."""
        function = functions.get(process["funcname"])
        if function is None:
            self.fail(process, [f"unknown function {process['funcname']!r}"])
            return
        try:
            output = function(process)
        except Exception as exc:
            self.fail(process, [f"{type(exc).__name__}: {exc}"])
            return
        self.close(process, output)

    # ------------------------------------------------------------------ HTTP

    def _id(self) -> str:
        if self.id is None:
            raise ExecutorError("register() the executor first")
        return self.id

    def _post(self, path: str, body: Mapping[str, Any], wait_s: float = 0.0) -> dict[str, Any]:
        return call_head(self.url, "POST", path, body, token=self.token, wait_s=wait_s)


def call_head(url: str, method: str, path: str, body: Any = None, *,
              token: str | None = None, wait_s: float = 0.0) -> dict[str, Any]:
    """One JSON request to the REST API of the head at ``url`` (ending in ``/``); a
    refusal or an unreachable head raises :class:`ExecutorError` saying which."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=wait_s + SLACK_S) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        raise ExecutorError(f"{method} {path}: {exc.code} {_error_text(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ExecutorError(f"cannot reach {url}: {exc}") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The head's ``error`` (and ``problems``) from a refusal's JSON body."""
    try:
        answer = json.loads(exc.read())
    except (ValueError, OSError):
        return str(exc.reason)
    if not isinstance(answer, dict):
        return str(exc.reason)
    return "; ".join([str(answer.get("error")), *answer.get("problems", [])])
