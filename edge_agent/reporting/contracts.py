"""Contracts in the running agent: their books, the stop answers, and their messages.

:class:`ContractDesk` is driven by the reporter. Each reporting round it takes the
records of every contract KPI window the machines' calculators produced (so far,
final, revised; :meth:`ContractDesk.take`), the stop events of the calculators on
each contract's service hours, and runs every
:class:`~edge_agent.contracts.book.ContractBook` round. It stages:

* the **status** of each contract (kind ``contract``, retained, one per round: at most
  every reporting interval, and so on every state change);
* **alerts** (kind ``contract_alert``, QoS 1 through the outbox, never evicted) when a
  level enters ``at_risk`` or ``breached`` and when a response bound is crossed;
* **period records** (kind ``contract_period``, never evicted) when a period closes,
  and their revisions.

Answers to stop events (acknowledged / arrived; :mod:`~edge_agent.reporting.answers`)
arrive from the MQTT command topic, a PLC tag or ``edge-agent ack`` (a file in the
state directory's ``commands/`` folder); each valid one is published at once as a
revision of the stop event and saved before the command is considered done.

Guarantees: every book's state and the answers are committed in the same
transaction as the messages of the round that produced them and the calculator
states those came from (:meth:`ContractDesk.depends`, issue 22): a ``kill -9`` leaves
either both (the restarted book does not repeat the round's alerts or period
records) or neither (it runs the round again from the same state). While the
outbox holds the round's messages in memory the states wait with them. On a start
the books also take the contract windows the calculators hold. A rejected
command changes nothing and is logged once while rejections last (event
``command_rejected``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edge_agent.buffer import Buffer, MessageKind
from edge_agent.contracts import Contract, contract_hash, service_profile
from edge_agent.contracts.book import ContractBook, is_chunk
from edge_agent.kpi import KpiProfile, KpiRecord, profile_hash
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.derived import StateSource
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.reporting.answers import AnswerKind, Answers, CommandError, parse_command
from edge_agent.reporting.machine import MachineSet
from edge_agent.reporting.messages import stop_event_id

log = logging.getLogger("edge_agent.reporting")

ANSWERS_KEY = "contract-answers"
COMMANDS_DIR = "commands"
#: Command files older than this are answered "expired" (the agent was not running).
COMMAND_MAX_AGE_S = 3600.0


def book_key(name: str) -> str:
    """Key of a contract book's saved state in the buffer."""
    return f"contract:{name}"


class ContractDesk:
    """Every contract's book, the stop answers, and the messages they produce.

    Args:
        machines: The live machines (their configuration, calculators and stops).
        staging: Where messages are staged.
        buffer: Where the books and answers are saved.
        allowed_lateness_s: The KPI windows' lateness (a period closes after it too).
        state_dir: The agent's state directory (``commands/`` for ``edge-agent ack``).
        events: Where answers and rejected commands are counted and logged.
        clock: Wall clock (UNIX seconds), injectable for tests.
    """

    def __init__(
        self,
        machines: MachineSet,
        staging: OutboxStaging,
        buffer: Buffer,
        *,
        allowed_lateness_s: float,
        state_dir: Path | None = None,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.machines = machines
        self.staging = staging
        self.buffer = buffer
        self.lateness = allowed_lateness_s
        self.spool = None if state_dir is None else state_dir / COMMANDS_DIR
        self.events = events or EventLog()
        self.clock = clock
        self.answers = Answers()
        self.books: dict[str, ContractBook] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.commands: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=1000)

    def __bool__(self) -> bool:
        return bool(self.books)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Build the books of the machines' contracts, continue their saved state."""
        saved = await self.buffer.load_state(ANSWERS_KEY)
        if saved is not None:
            self.answers.restore(saved)
        await self.apply(self.machines.contracts)

    async def apply(self, contracts: Mapping[str, Contract]) -> None:
        """Use ``contracts`` (at start and after a reload): unchanged books are kept."""
        books: dict[str, ContractBook] = {}
        for name, contract in contracts.items():
            current = self.books.get(name)
            if current is not None and contract_hash(current.contract) == contract_hash(contract):
                profiles = self._profiles(contract)
                if profiles != current.profiles:
                    # A machine's KPI profile changed (reload): same book, new profiles;
                    # its windows were split by the machine set, both parts are kept.
                    book = ContractBook(contract, profiles, allowed_lateness_s=self.lateness)
                    book.restore(current.to_state())
                    current = book
                books[name] = current
                continue
            books[name] = await self._open(contract)
        self.books = books
        self.latest = {n: s for n, s in self.latest.items() if n in books}

    def _profiles(self, contract: Contract) -> dict[str, KpiProfile]:
        return {
            m: service_profile(contract, self.machines[m].config.kpi)
            for m in contract.machines
            if m in self.machines
        }

    async def _open(self, contract: Contract) -> ContractBook:
        book = ContractBook(contract, self._profiles(contract), allowed_lateness_s=self.lateness)
        saved = await self.buffer.load_state(book_key(contract.name))
        if saved is not None and saved.get("hash") == contract_hash(contract):
            try:
                book.restore(saved["book"])
            except Exception:
                log.exception("Discarding unreadable contract state contract=%s", contract.name)
        elif saved is not None:
            log.info("Contract changed, its book starts afresh contract=%s", contract.name)
        # The calculators may hold window records newer than the saved book (a crash
        # between the two saves): take what they have.
        for machine in contract.machines:
            lm = self.machines.get(machine)
            if lm is None:
                continue
            for calc in (lm.calc, *lm.service.values()):
                finals = set(calc.window_names(final=True))
                for name in calc.window_names():
                    if is_chunk(name):
                        self._take(book, machine, calc.record(name), final=name in finals)
        return book

    # -- input -----------------------------------------------------------------------
    def take(self, machine: str, record: KpiRecord) -> None:
        """A record of a contract KPI window (so far, final or revised) from a calculator."""
        for book in self.books.values():
            self._take(book, machine, record, final=record.final)

    @staticmethod
    def _take(book: ContractBook, machine: str, record: KpiRecord, *, final: bool) -> None:
        book.take(
            machine,
            record.name,
            round(record.start * 1000),
            round(record.end * 1000),
            record.components(),
            final=final,
        )

    def decorate_stop(self, data: dict[str, Any]) -> dict[str, Any]:
        """A stop event about to be published, with its answers (``acknowledged_at`` ...)."""
        return self.answers.seen(data)

    # -- answers -----------------------------------------------------------------------
    def submit(self, topic: str, body: bytes) -> None:
        """Queue an MQTT command (the uplink's callback, on the loop); never blocks.

        Only the agent's own command topic is accepted (the broker's ACL decides who
        may publish there); anything else is rejected and nothing changes.
        """
        if topic != self.staging.topics.command():
            self.events.enter(Event.COMMAND_REJECTED, "mqtt", reason="not the command topic")
            return
        try:
            self.commands.put_nowait(("mqtt", body))
        except asyncio.QueueFull:
            self.events.enter(Event.COMMAND_REJECTED, "mqtt", reason="command queue full")

    async def answer(
        self, kind: AnswerKind, event_id: str, at_ms: int | None, *, source: str
    ) -> str | None:
        """Apply one answer; returns None when accepted, else why it was rejected."""
        now_ms = round(self.clock() * 1000)
        try:
            data = self.answers.answer(kind, event_id, now_ms if at_ms is None else at_ms, now_ms)
        except CommandError as exc:
            self.events.enter(Event.COMMAND_REJECTED, source, reason=str(exc))
            return str(exc)
        self.events.leave(Event.COMMAND_REJECTED, source)
        self.events.occurred(
            Event.STOP_ANSWERED, event_id, answer=kind.value, at=data[kind.field], source=source
        )
        topic = self.staging.topics.stop(machine=str(data["machine"]))
        self.staging.stage(MessageKind.STOP, topic, data, state=self._answers_source())
        if not await self.staging.flush():
            # Held in memory (outbox full): the answer itself is kept all the same.
            await self.buffer.save_state(ANSWERS_KEY, self.answers.to_state())
        return None

    async def plc_answer(self, machine: str, answer: str, ts: float) -> str | None:
        """A PLC signal's rising edge: answers ``machine``'s stop in progress at ``ts``."""
        event_id = self.answers.open_stop(machine)
        if event_id is None:
            reason = f"no stop in progress on {machine} to {answer}"
            self.events.enter(Event.COMMAND_REJECTED, "plc", reason=reason)
            return reason
        return await self.answer(AnswerKind(answer), event_id, round(ts * 1000), source="plc")

    async def handle_command(self, source: str, body: bytes) -> str | None:
        """One command payload (MQTT or a command file); None when accepted."""
        try:
            command = parse_command(body)
        except CommandError as exc:
            self.events.enter(Event.COMMAND_REJECTED, source, reason=str(exc))
            return str(exc)
        return await self.answer(command.kind, command.event_id, command.at_ms, source=source)

    async def run_commands(self, poll_s: float = 1.0) -> None:
        """Process MQTT commands as they come and command files every ``poll_s``."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                source, body = await asyncio.wait_for(self.commands.get(), poll_s)
                await self.handle_command(source, body)
            await self.poll_spool()

    async def poll_spool(self) -> None:
        """Answer the command files ``edge-agent ack`` left in ``commands/``.

        Each ``NAME.json`` gets a ``NAME.done`` (``{"ok": ..., "reason": ...}``), then is
        removed; the command waits for that file.
        """
        spool = self.spool
        if spool is None or not spool.is_dir():
            return
        for stale in spool.glob("*.done"):  # verdicts nobody waited for (ack timed out)
            with contextlib.suppress(OSError):
                if self.clock() - stale.stat().st_mtime > COMMAND_MAX_AGE_S:
                    stale.unlink()
        for path in sorted(spool.glob("*.json")):
            try:
                body = path.read_bytes()
                age = self.clock() - path.stat().st_mtime
            except OSError:
                continue
            if age > COMMAND_MAX_AGE_S:
                reason: str | None = "expired (the agent was not running to answer it)"
            else:
                reason = await self.handle_command("cli", body)
            done = path.with_suffix(".done")
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"ok": reason is None, "reason": reason}), encoding="utf-8")
            os.replace(tmp, done)
            path.unlink(missing_ok=True)

    # -- the round ---------------------------------------------------------------------
    def round(self, now: float) -> None:
        """Feed stops, run every book, stage status, alerts and period records."""
        for lm in self.machines.values():
            stops, lm.contract_stops = lm.contract_stops, []
            for key, event in stops:
                for ckey, contract in lm.contracts:
                    book = self.books.get(contract.name)
                    if ckey != key or book is None:
                        continue
                    book.stop(
                        lm.config.name,
                        stop_event_id(lm.config.name, event.start),
                        round(event.start * 1000),
                        event.cls,
                        event.fault,
                    )
        now_ms = round(now * 1000)
        times = self.answers.times()
        topics = self.staging.topics
        for name, book in self.books.items():
            out = book.round(now_ms, times)
            for rec in out.periods:
                topic = topics.contract(MessageKind.CONTRACT_PERIOD.value, contract=name)
                key = f"{name}|{rec['period']}|{rec['revision']}"
                self.staging.stage(MessageKind.CONTRACT_PERIOD, topic, rec, record_key=key)
            for alert in out.alerts:
                topic = topics.contract(MessageKind.CONTRACT_ALERT.value, contract=name)
                alert = alert | {
                    "contract_hash": contract_hash(book.contract),
                    "profile_hashes": _profile_hashes(book),
                }
                self.staging.stage(MessageKind.CONTRACT_ALERT, topic, alert)
                self.events.occurred(
                    Event.CONTRACT_ALERT,
                    name,
                    term=alert["term"],
                    level=alert["level"],
                    state=alert["state"],
                    event_id=alert.get("event_id"),
                )
            if out.status is not None:
                self.latest[name] = out.status
                topic = topics.contract(MessageKind.CONTRACT.value, contract=name)
                self.staging.stage(MessageKind.CONTRACT, topic, out.status, retain=True)
        self.answers.prune(now_ms)
        self.depends()

    def depends(self) -> None:
        """Commit every book's state and the answers with the next flush (see module docstring)."""
        for name, book in self.books.items():
            self.staging.depends_on(_book_source(name, book))
        self.staging.depends_on(self._answers_source())

    def _answers_source(self) -> StateSource:
        return ANSWERS_KEY, self.answers.to_state


def _book_source(name: str, book: ContractBook) -> StateSource:
    """A book's saved state, snapshotted when the flush takes it."""

    def snapshot() -> dict[str, Any]:
        return {"hash": contract_hash(book.contract), "book": book.to_state()}

    return book_key(name), snapshot


def _profile_hashes(book: ContractBook) -> dict[str, str]:
    return {m: profile_hash(p) for m, p in book.profiles.items()}
