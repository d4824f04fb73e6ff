"""Ingest: what the links read, handed over to the rest of the agent.

:class:`~edge_agent.ingest.queue.IngestQueue` is the drivers' sink (bounded,
its full-queue behaviour stated in config), :class:`~edge_agent.ingest.tags.TagState`
keeps the latest reading of every tag and the comms state of every device, and
:class:`~edge_agent.ingest.dispatch.Dispatcher` takes each batch off the queue
and hands it to the buffer, the tag state, telemetry and the machines.
"""
