"""greensrv.connect with Resp against a real redis-server: RESP2 commands, 10,000 pipelined
commands in one put(*cmds) read back in order, HELLO 3 and a RESP3 pub/sub push; and
examples/redis_client.py doing the same as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import WAIT
from redis_server import redis_server  # noqa: F401 - fixture

import greensrv
from greensrv.filters import Push, Resp, RespError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redis_client.py"
PACKAGE_ROOT = Path(greensrv.__file__).resolve().parent.parent


def test_resp2_commands(redis_server, no_leaks):  # noqa: F811
    with greensrv.connect(redis_server, filter=Resp(), timeout=WAIT) as conn:
        conn.put([b"SET", b"greeting", b"hello\r\nworld"])
        assert conn.get(timeout=WAIT) == "OK"
        conn.put([b"GET", b"greeting"], [b"GET", b"missing"], [b"INCRBY", b"n", b"41"],
                 [b"LPUSH", b"list", b"a", b"b"], [b"LRANGE", b"list", b"0", b"-1"],
                 [b"NOSUCHCOMMAND"])
        replies = [conn.get(timeout=WAIT) for _ in range(6)]
        assert replies[:5] == [b"hello\r\nworld", None, 41, 2, [b"b", b"a"]]
        assert isinstance(replies[5], RespError) and "unknown command" in replies[5].message


def test_ten_thousand_pipelined_commands_in_one_put_come_back_in_order(redis_server,  # noqa: F811
                                                                       no_leaks):
    with greensrv.connect(redis_server, filter=Resp(), timeout=WAIT) as conn:
        commands = [[b"SET", b"k%d" % i, b"v%d" % i] if i % 2 == 0 else [b"INCR", b"counter"]
                    for i in range(10_000)]
        conn.put(*commands)
        replies = [conn.get(timeout=WAIT) for _ in commands]
        assert replies == ["OK" if i % 2 == 0 else (i + 1) // 2 for i in range(10_000)]
        conn.put(*([b"GET", b"k%d" % i] for i in range(0, 10_000, 2)))
        assert [conn.get(timeout=WAIT) for _ in range(5_000)] == [
            b"v%d" % i for i in range(0, 10_000, 2)]


def test_hello_3_and_a_pub_sub_push(redis_server, no_leaks):  # noqa: F811
    with (greensrv.connect(redis_server, filter=Resp(), timeout=WAIT) as sub,
          greensrv.connect(redis_server, filter=Resp(), timeout=WAIT) as pub):
        sub.put([b"HELLO", b"3"])
        hello = sub.get(timeout=WAIT)
        assert isinstance(hello, dict) and hello[b"proto"] == 3 and hello[b"server"] == b"redis"
        sub.put([b"SUBSCRIBE", b"news"])
        confirm = sub.get(timeout=WAIT)
        assert isinstance(confirm, Push) and confirm == [b"subscribe", b"news", 1]
        # RESP3 lets the subscriber run ordinary commands too: their replies are not pushes.
        sub.put([b"PING"])
        assert sub.get(timeout=WAIT) == "PONG"
        pub.put([b"PUBLISH", b"news", b"extra!"])
        assert pub.get(timeout=WAIT) == 1
        message = sub.get(timeout=WAIT)
        assert isinstance(message, Push) and message == [b"message", b"news", b"extra!"]
        sub.put([b"HSET", b"h", b"f", b"1"], [b"HGETALL", b"h"], [b"SISMEMBER", b"s", b"x"])
        assert [sub.get(timeout=WAIT) for _ in range(3)] == [1, {b"f": b"1"}, False]


def test_the_example_against_redis_server(redis_server):  # noqa: F811
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--port", str(redis_server[1]), "--count", "10000"],
        capture_output=True, timeout=120, env=env, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "PONG" in out
    assert "10000 pipelined INCRs" in out and "counter = 10000" in out
    assert "push: [b'message', b'greetings', b'hello from redis_client']" in out
    assert "Traceback" not in out
