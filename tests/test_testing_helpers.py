"""greensrv.testing's own promises: a forgotten reply fails fast with a message, and an
exception in the handler under test reaches the test instead of showing up as an EOFError."""

from __future__ import annotations

import pytest

from greensrv.testing import READ_TIMEOUT, connect, serving


def silent(conn):
    for _ in conn:
        pass


def test_a_forgotten_reply_fails_within_the_read_timeout_with_a_message(no_leaks):
    with serving(silent) as server, connect(server, read_timeout=0.2) as conn:
        conn.put("a question nobody answers")
        with pytest.raises(TimeoutError, match=r"no record from the server within 0\.2 s"):
            conn.get()
        with pytest.raises(TimeoutError, match="read_timeout"):
            next(iter(conn))


def test_the_read_timeout_has_a_default_and_an_explicit_timeout_wins(no_leaks):
    assert 0 < READ_TIMEOUT <= 30
    with serving(silent) as server:
        with connect(server) as conn:
            assert conn.read_timeout == READ_TIMEOUT
            with pytest.raises(TimeoutError):
                conn.get(timeout=0.05)
        with connect(server, read_timeout=None) as conn:
            assert conn.read_timeout is None


def test_a_handler_exception_is_raised_by_serving_at_the_end_of_the_with(no_leaks):
    def broken(conn):
        conn.put("hello")
        raise ZeroDivisionError("the handler's own bug")

    with (pytest.raises(ZeroDivisionError, match="the handler's own bug"),
          serving(broken) as server, connect(server) as conn):
        assert conn.get() == "hello"
        with pytest.raises(EOFError):
            conn.get()


def test_a_callback_exception_is_raised_too_and_can_be_turned_off(no_leaks):
    def bad_input(conn, line):
        raise KeyError(line)

    with (pytest.raises(KeyError, match="boom"),
          serving(client_input=bad_input) as server, connect(server) as conn):
        conn.put("boom")
        with pytest.raises(EOFError):
            conn.get()

    with serving(client_input=bad_input, reraise=False) as server, connect(server) as conn:
        conn.put("boom")
        with pytest.raises(EOFError):
            conn.get()


def test_an_exception_in_the_with_body_wins_over_the_handlers(no_leaks):
    def broken(conn):
        raise ZeroDivisionError

    with (pytest.raises(RuntimeError, match="the test's own"),
          serving(broken) as server, connect(server) as conn):
        with pytest.raises(EOFError):
            conn.get()
        raise RuntimeError("the test's own")
