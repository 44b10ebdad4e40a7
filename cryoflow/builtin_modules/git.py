"""Clones or updates git repositories (CryoCloud's ``git`` module, on the real ``git``).

``dst/name`` is cloned from ``src`` when it is missing, then ``branch`` is checked out
and fast-forwarded from its remote. ``list`` updates several: ``[[name, url, branch],
...]``. A failing git command fails the job with git's own last lines.
"""

import os

from cryoflow.compat.tools import require_tool, run_tool

ccmodule = {
    "description": "Clone or update git repositories",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "URL (or path) of the repository",
        "dst": "Folder holding the clones, e.g. /home/cryocore/git",
        "name": "Repository name: the clone is dst/name",
        "branch": "Branch to check out (default: the repository's default branch)",
        "list": "Several at once: a list of [name, url, branch]",
    },
    "outputs": {
        "branch": "The branch checked out (a list with list)",
        "path": "The clone's folder (a list with list)",
        "commit": "The commit checked out (a list with list)",
    },
    "defaults": {
        "priority": 1000,
        "runOn": "success",
        "type": "admin",
    },
    "status": {"state": "What is being cloned or updated"},
}


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    require_tool("git", "install git (apt-get install git)")
    if not args.get("dst"):
        raise ValueError("git needs dst (the folder holding the clones)")
    items = _items(args)
    os.makedirs(args["dst"], exist_ok=True)
    results = [_update(worker, args["dst"], *item, cancel_event) for item in items]
    worker.status["state"] = "idle"
    if args.get("list") is not None:
        return 100, {key: [r[key] for r in results] for key in ("branch", "path", "commit")}
    return 100, results[0]


def _items(args):
    if args.get("list") is not None:
        items = args["list"]
        if not isinstance(items, list) or not all(
                isinstance(i, list | tuple) and len(i) in (2, 3) for i in items):
            raise ValueError("git list must be a list of [name, url, branch]")
        return [(i[0], i[1], i[2] if len(i) == 3 else None) for i in items]
    missing = [key for key in ("src", "name") if not args.get(key)]
    if missing:
        raise ValueError(f"git needs {' and '.join(missing)} (or list)")
    return [(args["name"], args["src"], args.get("branch"))]


def _update(worker, dst, name, url, branch, cancel_event):
    path = os.path.join(dst, str(name))
    if not os.path.isdir(os.path.join(path, ".git")):
        worker.status["state"] = f"cloning {name}"
        worker.log.info("cloning %s from %s", name, url)
        _git(worker, ["clone", "--", str(url), path], dst, cancel_event)
    worker.status["state"] = f"updating {name}"
    if branch:
        _git(worker, ["checkout", str(branch)], path, cancel_event)
    _git(worker, ["pull", "--ff-only"], path, cancel_event)
    current = _git(worker, ["rev-parse", "--abbrev-ref", "HEAD"], path, cancel_event)
    commit = _git(worker, ["rev-parse", "HEAD"], path, cancel_event)
    return {"branch": current, "path": path, "commit": commit}


def _git(worker, arguments, cwd, cancel_event):
    cmd = ["git", *arguments]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    result = run_tool(cmd, cancel_event, cwd=cwd, env=env,
                      on_line=lambda stream, line: worker.log.debug("git: %s", line))
    result.check(cmd, f"git {arguments[0]}")
    return result.stdout_tail.strip().splitlines()[-1] if result.stdout_tail.strip() else ""
