"""The whole product on one machine, for a first look: ``python -m demo`` (``scripts/demo.sh``).

Not shipped to a gateway or a collector host: it wires the three parts together with fixture
drives from ``hw_fixtures``.
"""
