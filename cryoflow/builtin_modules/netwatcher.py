"""Input module: every JSON object posted to an HTTP port becomes a pebble.

``POST /task`` with a JSON object (checked against ``schema`` when given) is answered
202 ``{"id": N}`` only once the pebble is committed to the store; an
``Idempotency-Key`` header makes a retried post return the same id. ``GET
/status/<id>`` follows the pebble until it is ``completed``. The port binds 127.0.0.1
unless ``host`` says otherwise, and any other host needs a ``token`` (or the
CRYOFLOW_NETWATCHER_TOKEN environment variable). See docs/inputs.md.

The node's outputs are the keys of the posted object, so they are not declared here:
list them in the node's ``outputs`` (they usually follow the schema) to have the graph
check references to them.
"""

import os

ccmodule = {
    "description": "Listen to an HTTP port; each posted JSON object becomes a pebble",
    "depends": [],
    "provides": ["Product"],
    "input_type": "permanent",
    "inputs": {
        "port": "TCP port to listen on (required; 0 picks a free one)",
        "host": "Address to bind (default 127.0.0.1; any other needs a token)",
        "schema": "JSON Schema the posts must match: a file path, or {'default': {...}}",
        "cors": "Origins allowed to post from a browser, a list or comma-separated (* for any)",
        "token": "Bearer token every request must send (Authorization: Bearer ...)",
        "max_bytes": "Largest body accepted, in bytes (default 1048576)",
        "max_pending": "Unfinished pebbles above which posts get 503 (default 10000)",
        "header_timeout": "Seconds a connection may take to send its headers (default 10)",
        "read_timeout": "Seconds a request may take to send its body (default 10)",
        "commit_timeout": "Seconds a post waits for its commit before 503 (default 30)",
        "retry_after": "Seconds suggested in Retry-After with a 503 (default 1)",
    },
    "defaults": {
        "priority": 0,
        "runOn": "always",
    },
}


def start(handler, args, stop_event):
    """Serve ``args["port"]`` until ``stop_event`` is set."""
    from cryoflow.watch.netwatch import serve

    serve(handler, args, stop_event, os.environ)
