"""``fleet-sim``: a city's taxi fleet through the real edge code, with planted truth.

``run`` drives N taxis over a synthetic road network; each is the edge agent from the
record level down (its own outbox, MQTT session, epoch and seqs, the real uplink).
``score`` asks the collector's public API what it found and compares it with the truth.
"""
