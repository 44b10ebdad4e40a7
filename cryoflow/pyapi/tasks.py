"""The tasks of CloudHarness operations, each turned into one node of the run's graph.

- :class:`PythonTask` calls a function (in the worker pool, or inline);
- :class:`BashTask` runs a bash script (the user's own text, passed to ``bash -c``);
- :class:`CommandBasedTask` runs one command given as an argument list, without a shell;
- :class:`CustomTask` runs a command in a container image, through the Docker executor
  (or the Kubernetes executor); without ``command`` it runs the image's own default
  command, and an image ``<app>-<task>`` is built from the application's Dockerfile
  (:mod:`cryoflow.pyapi.images`).

Extra keyword arguments become environment variables of the task. Task names are
normalised (lower case, runs of other characters than letters, digits and ``-`` become
one ``-``); two tasks with the same normalised name are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryoflow.errors import ConfigError
from cryoflow.graph.flowgraph import python_node
from cryoflow.graph.model import ENTRY, ArgSource, ArgSpec, Node, RunOn, frozen_map
from cryoflow.graph.modules import builtin_modules_dir
from cryoflow.pyapi import readonly
from cryoflow.pyapi.calls import import_path, import_ref, register_inline, why_not_importable
from cryoflow.pyapi.opsupport import SharedDir, shared_env

BASH_MODULE = "bash"
READ_ONLY_CALL = "cryoflow.pyapi.readonly:call_read_only"
"""Python tasks with read-only shared folders call their function through this."""


@dataclass
class Context:
    """What every task of one run shares; collects the inline references it made."""

    shared: tuple[SharedDir, ...] = ()
    pod: Mapping[str, Any] | None = None
    inline: bool = False
    container_executor: str = "docker"
    inline_refs: list[str] = field(default_factory=list)
    default_commands: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Image → its own default command (ENTRYPOINT + CMD), read before the run."""

    def reference(self, name: str, function: Callable[..., Any]) -> tuple[str, str | None]:
        """The reference a node calls ``function`` by, and the folder to import it from."""
        if self.inline:
            token = register_inline(function)
            self.inline_refs.append(token)
            return token, None
        ref = import_ref(function)
        if ref is None:
            raise ConfigError(why_not_importable(name, function))
        return ref, import_path(function)


class OperationTask:
    """A task of an operation: a name, environment variables, and how it becomes a node."""

    name: str
    env: Mapping[str, str]

    def node(self, name: str, parents: tuple[str, ...], context: Context) -> Node:
        raise NotImplementedError


def _env(values: Mapping[str, Any]) -> Mapping[str, str]:
    for key in values:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"{key!r} cannot be an environment variable name")
    return frozen_map({k: str(v) for k, v in values.items()})


@dataclass(frozen=True, init=False)
class PythonTask(OperationTask):
    """Call ``func`` (with no arguments); its return value is the task's result."""

    name: str
    func: Callable[..., Any]
    env: Mapping[str, str]

    def __init__(self, name: str, func: Callable[..., Any], **env: Any) -> None:
        if not callable(func):
            raise ConfigError(f"PythonTask {name!r}: {func!r} is not callable")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "func", func)
        object.__setattr__(self, "env", _env(env))

    def node(self, name: str, parents: tuple[str, ...], context: Context) -> Node:
        ref, path = context.reference(name, self.func)
        node = python_node(name, parents, ref, path=path, extra={"callable": ref})
        env = {**shared_env(context.shared, container=False), **self.env}
        args = {**node.args, "env": ArgSpec(ArgSource.LITERAL, value=env)}
        read_only = _read_only(context)
        if read_only:
            args["callable"] = ArgSpec(ArgSource.LITERAL, value=READ_ONLY_CALL)
            args["kwargs"] = ArgSpec(ArgSource.LITERAL, value={
                "target": ref, "target_path": path, "read_only": read_only})
        return replace(node, args=frozen_map(args))


@dataclass(frozen=True, init=False)
class BashTask(OperationTask):
    """Run ``source``, a bash script, in the first shared folder (if any)."""

    name: str
    source: str
    env: Mapping[str, str]

    def __init__(self, name: str, source: str, **env: Any) -> None:
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(f"BashTask {name!r}: give the script as a non-empty string")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "env", _env(env))

    def node(self, name: str, parents: tuple[str, ...], context: Context) -> Node:
        return _command_node(name, parents, context, self.env, script=self.source)


@dataclass(frozen=True, init=False)
class CommandBasedTask(OperationTask):
    """Run one command, an argument list, without a shell."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str]

    def __init__(self, name: str, command: Sequence[str], **env: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "command", _argv(name, command))
        object.__setattr__(self, "env", _env(env))

    def node(self, name: str, parents: tuple[str, ...], context: Context) -> Node:
        return _command_node(name, parents, context, self.env, command=list(self.command))


@dataclass(frozen=True, init=False)
class CustomTask(OperationTask):
    """Run ``command`` (default: the image's own) in a container of ``image``."""

    name: str
    image: str
    command: tuple[str, ...] | None
    env: Mapping[str, str]

    def __init__(self, name: str, image: str, command: Sequence[str] | None = None,
                 **env: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "command", None if command is None else _argv(name, command))
        object.__setattr__(self, "env", _env(env))

    def node(self, name: str, parents: tuple[str, ...], context: Context) -> Node:
        command = self.command or context.default_commands.get(self.image)
        if command is None:
            raise ConfigError(
                f"CustomTask {self.name!r}: give command=[...]; the image's own default "
                f"command is read from the Docker daemon, which the "
                f"{context.container_executor} executor does not use")
        node = _command_node(name, parents, context, self.env, command=list(command),
                             container=True)
        volumes = tuple((str(s.host), s.mount, "ro" if s.read_only else "rw")
                        for s in context.shared)
        docker = context.container_executor == "docker"
        extra = {"kubernetes": dict(context.pod)} if context.pod else {}
        return replace(node, volumes=volumes, extra=frozen_map(extra),
                       docker=self.image if docker else None,
                       image=None if docker else self.image)


def _argv(name: str, command: Any) -> tuple[str, ...]:
    if isinstance(command, str) or not command or not all(isinstance(c, str) for c in command):
        raise ConfigError(f"task {name!r}: give the command as a list of strings, "
                          "e.g. ['ls', '-la']")
    return tuple(command)


def _read_only(context: Context) -> list[str]:
    return [str(s.host) for s in context.shared if s.read_only]


def _command_node(name: str, parents: tuple[str, ...], context: Context, env: Mapping[str, str],
                  *, container: bool = False, **what: Any) -> Node:
    values = {**what, "env": {**shared_env(context.shared, container=container), **env}}
    if context.shared and not container:
        values["cwd"] = str(context.shared[0].host)
    if not container and _read_only(context):
        argv = values.pop("command", None) or ["bash", "-c", values.pop("script")]
        values["command"] = readonly.wrap_command(argv, _read_only(context))
    return Node(
        name=name,
        module=BASH_MODULE,
        module_ref=str(builtin_modules_dir() / f"{BASH_MODULE}.py"),
        parents=parents or (ENTRY,),
        args=frozen_map({k: ArgSpec(ArgSource.LITERAL, value=v) for k, v in values.items()}),
        run_on=RunOn.SUCCESS,
    )


def normalise(name: str) -> str:
    """A task name as a node name: ``"My Task_1"`` → ``"my-task-1"``."""
    text = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")
    return re.sub(r"-{2,}", "-", text)


def node_names(tasks: Sequence[OperationTask]) -> list[str]:
    """Normalised names; :class:`ConfigError` for an empty one or two that are the same."""
    seen: dict[str, str] = {}
    for task in tasks:
        if not isinstance(task, OperationTask):
            raise ConfigError(f"{task!r} is not a task; use PythonTask, BashTask, "
                              "CommandBasedTask or CustomTask")
        name = normalise(task.name)
        if not name:
            raise ConfigError(f"task name {task.name!r} has no letters or digits")
        if name in seen:
            raise ConfigError(f"tasks {seen[name]!r} and {task.name!r} have the same name "
                              f"{name!r} once normalised; rename one")
        seen[name] = task.name
    return list(seen)
