"""The built-in container executor: processes of type ``container-executor``.

It takes the processes of its type from a head over the REST API, as any executor
does, and runs each one's ``cmd`` keyword argument with ``sh -c`` in a fresh container
of its ``docker-image`` keyword argument (as ColonyOS's container executor does)::

    {"nodename": "task_a", "funcname": "execute",
     "kwargs": {"cmd": "echo TASK A", "docker-image": "local/debian-py:bookworm"},
     "conditions": {"executortype": "container-executor"}}

The output is the list of lines the command printed; a command that exits with
another code than 0 fails the process with its code and the last lines of stderr. A
process that runs longer than its ``maxexectime`` has its container killed (the head
also ends it ``timeout``). Containers run with no network unless ``network`` says so,
and are removed afterwards. No image is pulled: one that is not on the daemon fails
the process and says so.

Start one next to a head with ``ColonyServer(..., container_executor=True)``, or on
its own: ``python -m cryoflow.colony.containers --url URL`` (``$DOCKER_HOST`` names the
daemon).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from cryoflow.colony.executor import ExecutorClient, ExecutorError
from cryoflow.errors import CryoflowError

log = logging.getLogger("cryoflow.colony.containers")

EXECUTOR_TYPE = "container-executor"
FUNCNAME = "execute"
IMAGE_KEY = "docker-image"
CMD_KEY = "cmd"
KEEP_LINES = 1000


class ContainerRunError(CryoflowError):
    """The command could not run or did not succeed; the message says why."""


class ContainerExecutor:
    """Serves ``container-executor`` processes of the head at ``url`` with Docker."""

    def __init__(self, url: str, *, name: str = "container-executor-1",
                 type: str = EXECUTOR_TYPE, base_url: str | None = None,
                 network: str = "none", token: str | None = None) -> None:
        self.client = ExecutorClient(url, type=type, name=name, functions=(FUNCNAME,), token=token)
        self.base_url = base_url
        self.network = network
        self._docker: Any = None

    def serve(self, *, stop: threading.Event | None = None, timeout_s: float = 5.0) -> None:
        """Register, then run processes until ``stop`` is set.

        A refused request (the process ended meanwhile, say by its ``maxexectime``) is
        logged and the loop goes on; when the head forgot this executor it registers
        again.
        """
        stop = stop or threading.Event()
        self.client.register()
        while not stop.is_set():
            try:
                process = self.client.assign(timeout_s)
                if process is not None:
                    self.run(process)
            except ExecutorError as exc:
                if stop.is_set():
                    return
                log.warning("container executor: %s", exc)
                if "register again" in str(exc):
                    self._register_again()
                stop.wait(1.0)

    def _register_again(self) -> None:
        try:
            self.client.register()
        except ExecutorError as exc:
            log.warning("container executor: cannot register again: %s", exc)

    def run(self, process: Mapping[str, Any]) -> None:
        """Run one process and close or fail it."""
        try:
            lines = self.execute(process)
        except ContainerRunError as exc:
            self.client.fail(process, [str(exc)])
            return
        self.client.close(process, lines)

    def execute(self, process: Mapping[str, Any]) -> list[str]:
        """The lines ``cmd`` printed in a container of ``docker-image``."""
        kwargs = process.get("kwargs") or {}
        image, cmd = kwargs.get(IMAGE_KEY), kwargs.get(CMD_KEY)
        if not isinstance(image, str) or not image or not isinstance(cmd, str) or not cmd:
            raise ContainerRunError(f"give kwargs {CMD_KEY!r} (a command line) and "
                                    f"{IMAGE_KEY!r} (an image) to run a process here")
        env = {str(k): str(v) for k, v in (process.get("env") or {}).items()}
        timeout = process.get("maxexectime")
        return self._run(image, cmd, env, float(timeout) if timeout else None)

    def _run(self, image: str, cmd: str, env: Mapping[str, str],
             timeout_s: float | None) -> list[str]:
        import docker.errors

        client = self._client()
        try:
            client.images.get(image)
            container = client.containers.create(image, ["sh", "-c", cmd],
                                                 environment=dict(env),
                                                 network_mode=self.network, detach=True)
            container.start()
        except docker.errors.ImageNotFound:
            raise ContainerRunError(f"image {image!r} is not on the Docker daemon; build or "
                                    "load it there (images are never pulled)") from None
        except docker.errors.DockerException as exc:
            raise ContainerRunError(f"cannot start a container of {image!r}: {exc}") from None
        try:
            return self._finish(container, timeout_s)
        finally:
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                log.warning("could not remove container %s", container.id)

    def _finish(self, container: Any, timeout_s: float | None) -> list[str]:
        import requests.exceptions

        try:
            status = container.wait(timeout=timeout_s)
        except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
            container.kill()
            raise ContainerRunError(f"the command ran longer than maxexectime {timeout_s:g}s; "
                                    "its container was killed") from None
        code = int(status.get("StatusCode", -1))
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        if code != 0:
            stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
            last = " | ".join(stderr.strip().splitlines()[-5:])
            raise ContainerRunError(f"the command exited with code {code}: {last}")
        return stdout.splitlines()[-KEEP_LINES:]

    def _client(self) -> Any:
        if self._docker is None:
            import docker

            self._docker = docker.DockerClient(
                base_url=self.base_url or os.environ.get("DOCKER_HOST")
                or "unix:///var/run/docker.sock")
        return self._docker

    def close(self) -> None:
        if self._docker is not None:
            self._docker.close()


def start_in_thread(url: str, *, base_url: str | None = None
                    ) -> tuple[threading.Thread, threading.Event]:
    """Serve in a background thread; set the event to stop it."""
    stop = threading.Event()
    executor = ContainerExecutor(url, base_url=base_url)

    def main() -> None:
        try:
            executor.serve(stop=stop, timeout_s=1.0)
        finally:
            executor.close()

    thread = threading.Thread(target=main, name="cryoflow-container-executor", daemon=True)
    thread.start()
    return thread, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cryoflow.colony.containers",
                                     description="Run container-executor processes.")
    parser.add_argument("--url", default=os.environ.get("CRYOFLOW_URL"),
                        help="the head's URL (default: $CRYOFLOW_URL)")
    parser.add_argument("--name", default="container-executor-1")
    parser.add_argument("--network", default="none", help="container network (none, host)")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give the head's URL with --url (or set $CRYOFLOW_URL)")
    executor = ContainerExecutor(args.url, name=args.name, network=args.network)
    try:
        executor.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
