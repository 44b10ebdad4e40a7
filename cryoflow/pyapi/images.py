"""Task images of applications, and an image's own default command.

A :class:`~cryoflow.pyapi.tasks.CustomTask` image named ``<app>-<task>`` comes from
``applications/<app>/tasks/<task>/Dockerfile`` when such a file exists in one of the
applications folders (``applications=`` of the operation, else ``$CRYOFLOW_APPLICATIONS``
— folders separated by ``:`` — else ``./applications``). It is built on the Docker
daemon (``$DOCKER_HOST``) under that name before the run starts, without pulling
anything, so its ``FROM`` image must be on the daemon already. Other images must be on
the daemon.

A task without ``command`` runs the image's own default command: its ``ENTRYPOINT``
followed by its ``CMD``, in its ``WORKDIR``, with its environment. Like every task of
the Docker executor it runs under the head's uid:gid (not the image's ``USER``), and
the image needs Python 3.11 or later for the executor's job runtime.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryoflow.errors import ConfigError

APPLICATIONS_ENV = "CRYOFLOW_APPLICATIONS"
DEFAULT_APPLICATIONS = Path("applications")
_built: dict[str, str] = {}
"""Image name → the fingerprint of the task folder it was last built from."""
_lock = threading.Lock()


def application_roots(given: str | Path | Sequence[str | Path] | None) -> tuple[Path, ...]:
    """The applications folders to look in (see the module docstring)."""
    if given is None:
        env = os.environ.get(APPLICATIONS_ENV)
        given = [p for p in env.split(os.pathsep) if p] if env else [DEFAULT_APPLICATIONS]
    items = [given] if isinstance(given, str | Path) else list(given)
    return tuple(Path(p).absolute() for p in items)


def find_task_folder(image: str, roots: Iterable[Path]) -> Path | None:
    """The folder with the Dockerfile of image ``<app>-<task>``, if an application has it."""
    if ":" in image or "/" in image:
        return None
    for root in roots:
        if not root.is_dir():
            continue
        for app in sorted(root.iterdir()):
            prefix = f"{app.name}-"
            if app.is_dir() and image.startswith(prefix) and len(image) > len(prefix):
                folder = app / "tasks" / image[len(prefix):]
                if (folder / "Dockerfile").is_file():
                    return folder
    return None


def docker_client(base_url: str | None = None) -> Any:
    try:
        import docker
    except ImportError:
        raise ConfigError("container tasks need the docker package: "
                          "pip install 'cryoflow[docker]'") from None
    url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.DockerClient(base_url=url, timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ConfigError(f"cannot reach the Docker daemon at {url}: {exc}") from None
    return client


def build_task_image(client: Any, image: str, folder: Path) -> None:
    """Build ``image`` from ``folder`` unless it was built from the same files already."""
    import docker.errors

    mark = _fingerprint(folder)
    with _lock:
        if _built.get(image) == mark and _has_image(client, image):
            return
        try:
            client.images.build(path=str(folder), tag=image, rm=True, forcerm=True,
                                pull=False, network_mode="none")
        except docker.errors.BuildError as exc:
            last = " | ".join(str(line.get("stream") or line.get("error") or "").strip()
                              for line in list(exc.build_log)[-4:])
            raise ConfigError(f"image {image!r} from {folder / 'Dockerfile'} does not "
                              f"build: {exc.msg} ({last.strip(' |')})") from None
        except docker.errors.APIError as exc:
            raise ConfigError(f"image {image!r} from {folder / 'Dockerfile'} does not "
                              f"build: {exc.explanation or exc}") from None
        _built[image] = mark


def default_command(client: Any, image: str) -> list[str]:
    """The image's ``ENTRYPOINT`` + ``CMD``; :class:`ConfigError` when it has neither."""
    import docker.errors

    try:
        config = client.images.get(image).attrs.get("Config") or {}
    except docker.errors.ImageNotFound:
        raise ConfigError(f"image {image!r} is not on the Docker daemon and no application "
                          f"has a Dockerfile for it (applications/<app>/tasks/<task>/"
                          "Dockerfile for <app>-<task>); images are never pulled") from None
    argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    if not argv:
        raise ConfigError(f"image {image!r} has no default command (no ENTRYPOINT or CMD); "
                          "give the task command=[...]")
    return [str(a) for a in argv]


def prepare_images(images: Iterable[tuple[str, bool]], roots: Sequence[Path],
                   base_url: str | None = None) -> dict[str, list[str]]:
    """Build the application images among ``(image, wants_default)`` pairs; the default
    command of each image that wants it."""
    wanted = list(images)
    folders = {image: find_task_folder(image, roots) for image, _ in wanted}
    if not any(folders.values()) and not any(default for _, default in wanted):
        return {}
    client = docker_client(base_url)
    try:
        for image, folder in folders.items():
            if folder is not None:
                build_task_image(client, image, folder)
        return {image: default_command(client, image) for image, default in wanted if default}
    finally:
        client.close()


def _has_image(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()
