"""Fault scenarios with a ledger: real programs, real faults, every record accounted for.

Scenario code (``scenarios.py``) is shared with ``bench/faults.py``, which runs it at
full size; the tests here run it small. FAULTS.md lists the figures.
"""
