"""Work for counting Resp's instructions per item under valgrind (load-proof, unlike timings).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/resp_instructions.py N decode|encode

Run it with N = 0 and N = 20000 and divide the difference of the "Collected" counts by 20000:
decode is ``feed`` of N RESP2 ``SET`` commands in 64 KiB chunks, encode is N 57-byte bulk replies
plus N 3-element command arrays. docs/benchmarks.md has the figures before and after RESP3.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from greensrv.filters import Resp

CHUNK = 64 * 1024


def main() -> None:
    count, mode = int(sys.argv[1]), sys.argv[2]
    f = Resp()
    if mode == "decode":
        wire = f.encode([b"SET", b"key:000000001", b"v" * 20]) * count
        for i in range(0, len(wire), CHUNK):
            f.feed(wire[i : i + CHUNK])
    elif mode == "encode":
        encode = f.encode
        reply = b"x" * 57
        for _ in range(count):
            encode(reply)
        for _ in range(count):
            encode([b"SET", b"k", b"v"])
    else:
        raise SystemExit("mode is decode or encode")


if __name__ == "__main__":
    main()
