"""What both long-running commands need from their host, and nothing of either's domain.

``edge-agent run`` on a taxi gateway and ``cloud-collector run`` on a server are both systemd
services: they speak the ``sd_notify`` protocol and gate the watchdog on progress
(:mod:`daemon_kit.sdnotify`), and log the same way (:mod:`daemon_kit.logs`). Kept apart from
``protocol`` (the pure wire format, no I/O) and from both parts, so neither imports the other.
"""
