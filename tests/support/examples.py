"""How many examples the Hypothesis properties try: one knob for the whole suite.

Two profiles, chosen by ``HYPOTHESIS_PROFILE`` (read once, by ``tests/conftest.py``):

- ``suite`` (the default, what ``scripts/test.sh`` and CI run): 40 % of each property's
  count as written, at least 20; a property without a count of its own gets 40.
- ``thorough``: every count as written (Hypothesis' own default of 100 where none is),
  for a deeper run before a release or after touching the wire format:
  ``HYPOTHESIS_PROFILE=thorough pytest tests/protocol``.

A property states its count as ``@settings(max_examples=examples(300))``: the number is
its weight against the others, the profile sets the scale. A test that repeats a run to
catch a race that shows in some runs only scales its repeats the same way (``repeats``).
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
THOROUGH_EXAMPLES = 100  # Hypothesis' own default: the scale counts are written in
PROFILES = {"suite": 40, "thorough": THOROUGH_EXAMPLES}
MIN_EXAMPLES = 20


def load_profile(env: Mapping[str, str]) -> str:
    """Register the profiles and load the one ``env`` names (``suite`` when unset)."""
    for name, count in PROFILES.items():
        settings.register_profile(name, max_examples=count, deadline=None)
    name = env.get(PROFILE_ENV) or "suite"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected one of {', '.join(PROFILES)}")
    settings.load_profile(name)
    return name


def examples(n: int) -> int:
    """``n`` examples scaled to the loaded profile (``n`` itself under ``thorough``)."""
    return max(MIN_EXAMPLES, round(n * settings().max_examples / THOROUGH_EXAMPLES))


def repeats(n: int, least: int = 5) -> int:
    """``n`` repetitions scaled to the loaded profile, at least ``least``."""
    return max(least, round(n * settings().max_examples / THOROUGH_EXAMPLES))
