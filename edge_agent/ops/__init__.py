"""Operating the agent: health figures, the status file, systemd, the clock and tuning.

Everything here watches or reports on the pipeline; nothing here moves data.
:mod:`.health` samples process and host figures, :mod:`.status` writes
``status.json`` for ``edge-agent status``, :mod:`.sdnotify` talks to systemd,
:mod:`.clock` says whether the wall clock can be trusted, and :mod:`.tuning`
holds the process-wide speed and memory settings with the figures that
justified them.
"""
