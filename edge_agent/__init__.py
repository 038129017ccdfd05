"""The taxi edge agent.

python-can imports asammdf (and with it numpy and pandas) as soon as it is installed, which
the ``mdf`` extra does: about half a CPU-second and 65 MB RSS more for every agent process
(measured in BENCHMARKS.md), although only reading an ``.mf4`` recording needs it.
python-can is therefore first imported here with asammdf hidden;
:func:`edge_agent.recordings.load_mdf4_support` loads it when an MDF4 file is read.
"""

import sys

if "can" not in sys.modules and "asammdf" not in sys.modules:
    sys.modules["asammdf"] = None  # type: ignore[assignment]  # None makes the import fail
    try:
        import can  # noqa: F401
    finally:
        del sys.modules["asammdf"]
