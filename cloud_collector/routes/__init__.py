"""The HTTP API's routers, one module per resource; ``cloud_collector.api.create_app``
wires them.

Each router reads what it needs from the app's ``context.ApiContext`` (the store's query
side, the ingest counters, limits, the clock) through a FastAPI dependency, so a router
module holds only its endpoints and the parsing of their parameters (``params``).
"""
