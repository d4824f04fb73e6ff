"""The runtime's two hooks into evidence: attach the chain, and queue the config audit record.

The runtime (``edge_agent.runtime``) only wires: it calls :func:`attach` once,
after building the buffer and the uplink and before ``buffer.open()``, and
:func:`config_audit` at start and after each applied reload, queuing the result
like any other message. Everything else (signing, linking, segments, rotation)
happens inside the buffer's outbox transactions (:mod:`.chain`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.buffer import Buffer, Outgoing, Priority
from edge_agent.evidence.audit import config_record
from edge_agent.evidence.chain import Chain
from edge_agent.evidence.keys import KeyStore

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.uplink.topics import TopicTemplates


def attach(buffer: Buffer, config: AgentConfig, topics: TopicTemplates) -> Chain:
    """Give ``buffer`` the agent's evidence chain (keys in ``<state_dir>/evidence``).

    Must run before ``buffer.open()``: the device key is created there at first start
    and a segment start or a pending key rotation is committed before any record.
    """
    if buffer.is_open:
        raise RuntimeError("attach the evidence chain before the buffer is opened")
    chain = Chain(
        KeyStore(config.agent.state_dir),
        config.agent.id,
        topics={"gap": topics.gap(), "key": topics.key()},
    )
    buffer.chain = chain
    return chain


def config_audit(config: AgentConfig, event: str, topics: TopicTemplates) -> Outgoing:
    """The ``config`` record for an accepted configuration (``event``: start or reload).

    Contract definitions (issue 15) join as ``contracts={id: hash}`` once they exist.
    """
    data = config_record(
        event=event,
        config_file=config.file,
        profiles={name: machine.kpi for name, machine in config.machines.items()},
    )
    return Outgoing(kind="config", topic=topics.config(), data=data, priority=Priority.HIGH)
