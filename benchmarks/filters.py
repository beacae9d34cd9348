"""Records per second through each greensrv filter, decoding and encoding.

Feeds 64 KiB chunks made of 64-byte records (wire size, terminator or header included) and
reports, per filter, decode through ``feed`` (all records of a chunk at once), decode through
``next_record`` one record at a time (as a Connection pulls them), ``encode`` one record per
call and ``encode_many`` for a whole chunk's records. Pure CPU: no sockets.

Then PROXY protocol headers parsed per second (``greensrv.proxy``), one fresh parser per header
as the server uses it, for v1 and v2 lines as HAProxy writes them.

Run: ``python benchmarks/filters.py`` (``--seconds`` per measurement, ``--only NAME``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from greensrv.filters import (
    NEED_DATA,
    Block,
    Filter,
    JsonLines,
    LengthPrefixed,
    Line,
    Netstring,
    Resp,
)
from greensrv.proxy import PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID, ProxyHeader, ProxyHeaderParser

RECORD_SIZE = 64
CHUNK_SIZE = 64 * 1024


def cases() -> list[tuple[str, Callable[[], Filter], list[Any]]]:
    """(name, filter factory, one chunk's worth of records whose wire form is 64 bytes)."""

    def text(payload: int) -> Callable[[int], str]:
        return lambda i: (f"{i:08d}" + "x" * payload)[:payload]

    def blob(payload: int) -> Callable[[int], bytes]:
        return lambda i: (b"%08d" % i + b"y" * payload)[:payload]

    n = CHUNK_SIZE // RECORD_SIZE
    return [
        ("Line (str, \\r\\n)", Line, [text(62)(i) for i in range(n)]),
        ("Line (bytes, \\n)", lambda: Line(literal=b"\n", encoding=None),
         [blob(63)(i) for i in range(n)]),
        ("Line strict_crlf", lambda: Line(strict_crlf=True), [text(62)(i) for i in range(n)]),
        ("Block(64)", lambda: Block(64), [blob(64)(i) for i in range(n)]),
        ("LengthPrefixed", LengthPrefixed, [blob(60)(i) for i in range(n)]),
        ("Netstring", Netstring, [blob(60)(i) for i in range(n)]),  # "60:" + 60 + "," = 64
        ("JsonLines", JsonLines, [{"id": f"{i:08d}", "v": "z" * 39} for i in range(n)]),
        ("Resp bulk reply", Resp, [blob(57)(i) for i in range(n)]),  # "$57\r\n"+57+"\r\n"
        ("Resp SET command", Resp,
         [[b"SET", b"key:%06d" % i, b"v" * 27] for i in range(n)]),  # 64 bytes each
    ]


def measure(fn: Callable[[], int], seconds: float) -> float:
    """Best records/s over repeated runs of ``fn`` (which returns the records it handled)."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        count = fn()
        dt = time.perf_counter() - t0
        best = max(best, count / dt)
        if t0 + dt > deadline:
            return best


def bench(name: str, make: Callable[[], Filter], records: list[Any], seconds: float) -> None:
    proto = make()
    wire = proto.encode_many(records)
    chunks = [wire[i : i + CHUNK_SIZE] for i in range(0, len(wire), CHUNK_SIZE)] * 16
    expected = len(records) * 16
    sizes = {len(proto.encode(r)) for r in records}

    def decode_feed() -> int:
        f = make()
        got = 0
        for chunk in chunks:
            got += len(f.feed(chunk))
        assert got == expected, (got, expected)
        return got

    def decode_pull() -> int:
        f = make()
        got = 0
        receive, next_record = f.receive, f.next_record
        for chunk in chunks:
            receive(chunk)
            while next_record() is not NEED_DATA:
                got += 1
        assert got == expected, (got, expected)
        return got

    def encode_one() -> int:
        encode = proto.encode
        for _ in range(16):
            for r in records:
                encode(r)
        return expected

    def encode_many() -> int:
        encode_many = proto.encode_many
        for _ in range(16):
            encode_many(records)
        return expected

    results = [measure(fn, seconds) for fn in (decode_feed, decode_pull, encode_one, encode_many)]
    size = "/".join(str(s) for s in sorted(sizes))
    print(f"| {name} | {size} | " + " | ".join(f"{r / 1e6:.2f}" for r in results) + " |",
          flush=True)


def proxy_cases() -> list[tuple[str, bytes]]:
    """(name, wire form) of the PROXY headers HAProxy sends: send-proxy, send-proxy-v2 and
    send-proxy-v2 with ``proxy-v2-options crc32c,unique-id``."""
    client, frontend = ("203.0.113.7", 51234), ("198.51.100.1", 443)
    six = ("2001:db8::7", 51234), ("2001:db8::1", 443)
    unique = {PP2_TYPE_CRC32C: b"",
              PP2_TYPE_UNIQUE_ID: b"CB00710B:C802_C6336401:01BB_6B0C60EB_0001:5170"}
    return [
        ("PROXY v1 TCP4", ProxyHeader(1, "PROXY", client, frontend).encode()),
        ("PROXY v1 TCP6", ProxyHeader(1, "PROXY", *six).encode()),
        ("PROXY v2 INET", ProxyHeader(2, "PROXY", client, frontend).encode()),
        ("PROXY v2 INET6", ProxyHeader(2, "PROXY", *six).encode()),
        ("PROXY v2 INET crc32c,unique-id",
         ProxyHeader(2, "PROXY", client, frontend, unique).encode()),
    ]


def bench_proxy(name: str, wire: bytes, seconds: float) -> None:
    def parse() -> int:
        for _ in range(1000):
            ProxyHeaderParser().feed(wire)
        return 1000

    rate = measure(parse, seconds)
    print(f"| {name} | {len(wire)} | {rate / 1e3:.1f} | {1e6 / rate:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.machine()}; 64 KiB chunks; million records/s, best of runs over "
          f"{args.seconds:g} s\n")
    print("| filter | wire bytes/record | decode feed | decode next_record | encode | "
          "encode_many |")
    print("|---|---|---|---|---|---|")
    for name, make, records in cases():
        if args.only.lower() in name.lower():
            bench(name, make, records, args.seconds)
    print("\n| PROXY header | bytes | thousand headers/s | µs/header |")
    print("|---|---|---|---|")
    for name, wire in proxy_cases():
        if args.only.lower() in name.lower():
            bench_proxy(name, wire, args.seconds)


if __name__ == "__main__":
    main()
