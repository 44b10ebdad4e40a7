"""The head's HTTP service: REST under ``/api/v1``, WebSocket events, metrics, web view.

Start it with :func:`cryoflow.api.server.start_api`. Nothing in the core imports this
package: it hangs off the head's listeners and reads the store.
"""
