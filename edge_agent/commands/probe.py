"""``edge-agent probe modbus``: read raw registers and show them in every type and byte order.

For a technician at the machine with a register map of doubtful quality: it
reads ``--count`` registers at ``--address`` (zero-based wire address) plus
one on each side, prints them raw, decoded as every type in every byte/word
order at the address and shifted by one either way (the zero/one-based
confusion), and marks the interpretations that match ``--expect``. It only
reads, never writes. Exit codes: 0 read ok (and, with ``--expect``, at
least one match); 1 device unreachable, exception reply, or no match; 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["register", "run_probe"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``probe`` sub-command with its ``modbus`` protocol."""
    parser = subparsers.add_parser(
        "probe",
        help="read raw values from a device and show every interpretation",
        description="Read raw values from a device and show every interpretation.",
        epilog="Example:\n  edge-agent probe modbus --endpoint 192.168.1.20:502 --unit 1 "
        "--address 100 --count 2 --expect 1500\n(see edge-agent probe modbus --help)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    protocols = parser.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    mb = protocols.add_parser(
        "modbus",
        help="Modbus TCP or RTU",
        description="Read Modbus registers; decode them in every type, order and address shift.",
        epilog="Examples:\n"
        "  edge-agent probe modbus --endpoint 127.0.0.1:5020 --unit 1 --table holding"
        " --address 10 --count 4 --expect 1234.5\n"
        "  edge-agent probe modbus --serial-port /dev/ttyUSB0 --baudrate 9600 --parity E"
        " --unit 3 --address 0 --count 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = mb.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="Modbus TCP host:port ([::1]:502 for IPv6)")
    where.add_argument("--serial-port", help="Modbus RTU serial device, e.g. /dev/ttyUSB0")
    mb.add_argument("--baudrate", type=int, default=19200, help="RTU baud rate (default 19200)")
    mb.add_argument("--parity", choices=("N", "E", "O"), default="N", help="RTU parity (default N)")
    mb.add_argument(
        "--stopbits", type=int, choices=(1, 2), default=1, help="RTU stop bits (default 1)"
    )
    mb.add_argument(
        "--bytesize", type=int, choices=(7, 8), default=8, help="RTU data bits (default 8)"
    )
    mb.add_argument("--unit", type=int, default=1, help="unit id (default 1)")
    mb.add_argument(
        "--table",
        choices=("coil", "discrete_input", "holding", "input"),
        default="holding",
        help="data table (default holding)",
    )
    mb.add_argument("--address", type=int, required=True, help="zero-based wire address")
    mb.add_argument("--count", type=int, default=4, help="registers or bits to read (default 4)")
    mb.add_argument("--expect", help="a value you know the device holds (number or text)")
    mb.add_argument("--timeout-ms", type=int, default=1000, help="response timeout (default 1000)")
    mb.set_defaults(func=run_probe)


def _expected(text: str | None) -> float | str | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def run_probe(args: argparse.Namespace) -> int:
    """Run ``probe modbus`` and return the exit code."""
    from drivers.modbus.config import (
        ModbusTable,
        Parity,
        SerialTransport,
        TcpTransport,
        parse_endpoint,
    )
    from drivers.modbus.link import ExceptionReply
    from drivers.modbus.probe import format_probe, interpret, read_raw
    from edge_agent.errors import DeviceUnavailable

    table = ModbusTable(args.table)
    limit = 2000 if table.is_bits else 125
    if (
        not 0 <= args.address <= 65535
        or not 1 <= args.count <= limit
        or args.address + args.count > 65536
    ):
        print(
            f"error: --address 0..65535 and --count 1..{limit} within the address space",
            file=sys.stderr,
        )
        return EXIT_USAGE
    transport: TcpTransport | SerialTransport
    if args.endpoint:
        parsed = parse_endpoint(args.endpoint)
        if parsed is None:
            print(f"error: --endpoint expects host:port, got {args.endpoint!r}", file=sys.stderr)
            return EXIT_USAGE
        transport = TcpTransport(host=parsed[0], port=parsed[1])
    else:
        transport = SerialTransport(
            port=args.serial_port,
            baudrate=args.baudrate,
            parity=Parity(args.parity),
            stopbits=args.stopbits,
            bytesize=args.bytesize,
        )
    expect = _expected(args.expect)
    try:
        raw = asyncio.run(
            read_raw(
                transport,
                unit_id=args.unit,
                table=table,
                address=args.address,
                count=args.count,
                timeout_ms=args.timeout_ms,
            )
        )
    except DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ExceptionReply as exc:
        print(f"error: device answered with a Modbus exception: {exc.reason}", file=sys.stderr)
        return EXIT_FAILURE
    where = f"{transport.key} unit {args.unit}"
    print(format_probe(raw, where, expect))
    if expect is not None and not any(i.matches for i in interpret(raw, expect)):
        return EXIT_FAILURE
    return EXIT_OK
