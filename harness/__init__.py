"""Real parts, really started, for the tests and the benchmarks: mosquitto, PostgreSQL, gpsd,
a collector process, an acking consumer, and the fault rigs (link proxy, ledger, scenarios).

Used from the checkout only; no production package imports it.
"""
