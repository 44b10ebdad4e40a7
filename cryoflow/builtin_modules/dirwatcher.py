"""Input module: every file (or folder) that settles in a watched folder becomes a pebble.

A file is offered once its size, mtime and inode stayed the same for ``stabilize``
seconds after its last write, close or rename into the folder; a file still being
written never fires, and one deleted before it settled never becomes a pebble. Each
version of a file becomes exactly one pebble, also across restarts of the head: the
version's seen key (node, path, size, mtime_ns, inode) is committed in the same
transaction as the pebble. Files that arrived while the head was down are found by the
scan at start. See docs/inputs.md.
"""

ccmodule = {
    "description": "Watch a folder; each file (or folder) that has settled becomes a pebble",
    "depends": [],
    "provides": ["Input"],
    "input_type": "permanent",
    "inputs": {
        "src": "The folder to watch (required)",
        "recursive": "Also watch the folders below src (default false)",
        "stabilize": "Seconds a file must stay unchanged before it is offered (default 5)",
        "patterns": "Globs a file name must match, a list or comma-separated (default *)",
        "ignore": "Globs of names to skip; replaces the default .*, *.part, *.tmp",
        "poll": "Poll the folder instead of using inotify, for NFS and SMB (default false)",
        "poll_interval": "Seconds between polls with poll (default stabilize/4, 0.1 to 1)",
        "dirs": "Offer each folder directly in src as one item once nothing below it "
                "changed for stabilize seconds (default false)",
        "sweep": "Seconds between reconciliation scans of the whole folder (default 300)",
        "window": "Items offered to the head at once before waiting for commits (default 256)",
    },
    "outputs": {
        "fullpath": "Absolute path of the file or folder",
        "relpath": "Path relative to src",
        "datasize": "Size in bytes (of all files below it, for a folder)",
        "mtime": "Modification time, seconds since the epoch (the newest below a folder)",
        "isdir": "True for a folder item (dirs mode)",
    },
    "defaults": {
        "priority": 0,
        "runOn": "always",
    },
}


def start(handler, args, stop_event):
    """Watch ``args["src"]`` until ``stop_event`` is set."""
    from cryoflow.watch.dirwatch import watch

    watch(handler, args, stop_event)
