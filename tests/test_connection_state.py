"""``greensrv.connection_state``: every legal move of a connection's lifecycle, and every illegal
one, from a table (the state machine is pure: no socket needed)."""

from __future__ import annotations

import itertools

import pytest

from greensrv.connection_state import (
    CLOSED,
    CLOSING,
    DONE,
    FIN_SENT,
    OPEN,
    PEER_CLOSED,
    READING,
    STOPPED,
    ConnectionState,
    IllegalTransition,
    Input,
    Output,
)

#: (from, named method, to): every legal input move; any other (from, method) pair raises.
INPUT_LEGAL = {
    (READING, "stop_input"): STOPPED,
    (READING, "peer_closed"): PEER_CLOSED,
    (PEER_CLOSED, "stop_input"): DONE,
    (STOPPED, "peer_closed"): DONE,
}
OUTPUT_LEGAL = {
    (OPEN, "begin_closing"): CLOSING,
    (OPEN, "closed"): CLOSED,
    (CLOSING, "fin_sent"): FIN_SENT,
    (CLOSING, "closed"): CLOSED,
    (FIN_SENT, "closed"): CLOSED,
}
INPUT_METHODS = ("stop_input", "peer_closed")
OUTPUT_METHODS = ("begin_closing", "fin_sent", "closed")


def state_with(input_state=READING, output_state=OPEN) -> ConnectionState:
    state = ConnectionState()
    state.input, state.output = input_state, output_state  # a test may place it anywhere
    return state


def test_a_new_connection_reads_and_is_open():
    state = ConnectionState()
    assert (state.input, state.output) == (READING, OPEN)
    assert not state.input_stopped and not state.peer_eof


MOVES = ([("input", start, method) for start, method in itertools.product(Input, INPUT_METHODS)]
         + [("output", start, method)
            for start, method in itertools.product(Output, OUTPUT_METHODS)])


@pytest.mark.parametrize(("side", "start", "method"), MOVES)
def test_every_move_is_legal_by_the_table_or_raises_and_changes_nothing(side, start, method):
    state = state_with(**{f"{side}_state": start})
    other = "output" if side == "input" else "input"
    other_before = getattr(state, other)
    expected = (INPUT_LEGAL if side == "input" else OUTPUT_LEGAL).get((start, method))
    if expected is None:
        with pytest.raises(IllegalTransition, match=f"{side} cannot go from"):
            getattr(state, method)()
        assert getattr(state, side) is start, "an illegal move changes nothing"
    else:
        getattr(state, method)()
        assert getattr(state, side) is expected
    assert getattr(state, other) is other_before


@pytest.mark.parametrize(("input_state", "stopped", "eof"), [
    (READING, False, False), (PEER_CLOSED, False, True), (STOPPED, True, False), (DONE, True, True),
])
def test_the_input_predicates_are_read_from_the_state(input_state, stopped, eof):
    state = state_with(input_state=input_state)
    assert (state.input_stopped, state.peer_eof) == (stopped, eof)


def test_the_repr_names_both_states():
    assert repr(state_with(STOPPED, FIN_SENT)) == (
        "<ConnectionState input=stopped output=FIN sent>")
