"""The runtime's hooks into evidence: attach the chain, follow the topics, audit each config.

The runtime (``edge_agent.runtime``) only wires: it calls :func:`attach` once,
after building the buffer and the sender (whose uplink owns the topic templates)
and before ``buffer.open()``; :func:`stage_audit` at start and after each applied
reload; :func:`follow_topics` when a reload replaced the uplink. Everything else
(signing, linking, segments, key rotation) happens inside the buffer's outbox
transactions (:mod:`.chain`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent.buffer import Buffer, MessageKind, Outgoing
from edge_agent.contracts import contract_hash
from edge_agent.evidence.audit import config_record
from edge_agent.evidence.chain import Chain
from edge_agent.evidence.keys import KeyStore

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.outgoing.staging import OutboxStaging
    from edge_agent.uplink.topics import TopicTemplates


def _own_topics(topics: TopicTemplates) -> dict[str, str]:
    return {"gap": topics.gap(), "key": topics.key()}


def attach(buffer: Buffer, config: AgentConfig, topics: TopicTemplates) -> Chain:
    """Give ``buffer`` the agent's evidence chain (keys in ``<state_dir>/evidence``).

    Must run before ``buffer.open()``: the device key is created there at first start
    and a segment start or a pending key rotation is committed before any record.
    """
    if buffer.is_open:
        raise RuntimeError("attach the evidence chain before the buffer is opened")
    chain = Chain(KeyStore(config.agent.state_dir), config.agent.id, topics=_own_topics(topics))
    buffer.chain = chain
    return chain


def follow_topics(buffer: Buffer, topics: TopicTemplates) -> None:
    """After a reload replaced the uplink: the chain's own records use its topics."""
    if buffer.chain is not None:
        buffer.chain.topics = _own_topics(topics)


def _audit_data(config: AgentConfig, event: str) -> dict[str, Any]:
    return config_record(
        event=event,
        config_file=config.file,
        profiles={name: machine.kpi for name, machine in config.machines.items()},
        contracts={name: contract_hash(c) for name, c in config.contracts.items()},
    )


def config_audit(config: AgentConfig, event: str, topics: TopicTemplates) -> Outgoing:
    """The ``config`` record for an accepted configuration (``event``: start or reload)."""
    kind = MessageKind.CONFIG
    data = _audit_data(config, event)
    return Outgoing(kind=kind, topic=topics.config(), data=data, priority=kind.priority)


def stage_audit(staging: OutboxStaging, config: AgentConfig, event: str) -> None:
    """Stage the ``config`` record of ``config`` (the caller flushes)."""
    staging.stage(MessageKind.CONFIG, staging.topics.config(), _audit_data(config, event))
