"""Runs a script with bash, or a command as an argument list: BashTask and CommandBasedTask.

``script`` is the text of a bash script (the user's own; it is passed to ``bash -c``
as one argument and never assembled from data), ``command`` an argument list run as
it is (no shell). ``env`` adds environment variables, ``cwd`` sets the folder. The
job fails when the exit code is not 0; stdout and stderr are kept (the last 64 KiB).
The last 20 lines of stdout go to the job's log (INFO); so do those of stderr (WARNING)
when the process succeeded (when it failed, stderr's tail is the job's error).
"""

import os
import subprocess

ccmodule = {
    "description": "Run a bash script or a command (argument list) and keep its output",
    "depends": [],
    "provides": [],
    "inputs": {
        "script": "The bash script to run (or give command)",
        "command": "The command as a list of arguments, run without a shell",
        "env": "Environment variables for the process (optional)",
        "cwd": "The folder to run in (optional)",
    },
    "outputs": {
        "result": "{'returncode', 'stdout', 'stderr'} of the process",
        "stdout": "What the process printed",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
    },
    "status": {},
}

_KEEP = 64 * 1024
_POLL_S = 0.2


def process_task(worker, task, cancel_event=None):
    """Run the script or command; fail when it exits with a code other than 0."""
    args = task["args"]
    argv = _argv(args)
    env = {**os.environ, **{str(k): str(v) for k, v in (args.get("env") or {}).items()}}
    process = subprocess.Popen(argv, env=env, cwd=args.get("cwd") or None,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = _wait(process, cancel_event)
    result = {"returncode": process.returncode, "stdout": stdout[-_KEEP:],
              "stderr": stderr[-_KEEP:]}
    for line in stdout.splitlines()[-20:]:
        worker.log.info("%s", line)
    if process.returncode == 0:
        for line in stderr.splitlines()[-20:]:
            worker.log.warning("%s", line)
    else:
        raise RuntimeError(f"{argv[0]} exited with code {process.returncode}: "
                           f"{stderr.strip()[-500:]}")
    return 100, {"result": result, "stdout": result["stdout"]}


def _argv(args):
    command = args.get("command")
    if command:
        if isinstance(command, str) or not all(isinstance(c, str) for c in command):
            raise TypeError("command must be a list of strings, e.g. ['ls', '-la']")
        return list(command)
    script = args.get("script")
    if not isinstance(script, str) or not script.strip():
        raise ValueError("give a bash script in 'script' or an argument list in 'command'")
    return ["bash", "-c", script]


def _wait(process, cancel_event):
    while True:
        try:
            return process.communicate(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            if cancel_event is not None and cancel_event.is_set():
                process.kill()
                return process.communicate()
