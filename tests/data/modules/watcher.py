"""Test fixture: a permanent input module shaped like a folder watcher."""

ccmodule = {
    "description": "Pretend to watch a folder",
    "inputs": {"src": "Folder", "recursive": "Also subfolders"},
    "outputs": {"fullpath": "Path of the file", "relpath": "Path below src"},
    "provides": ["File"],
}


def start(handler, args, stop_event):
    stop_event.wait()
