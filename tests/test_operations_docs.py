"""docs/operations.md holds together: its command lines parse as the command's own, its example
log line has the format the server writes, and its Kubernetes arithmetic adds up. (The
Prometheus, alert-rule and HAProxy blocks run against the real programs in
tests/deploy/test_operations.py.)"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from greensrv.cli import parser
from greensrv.connection_ends import ConnectionEnds

DOC = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()


def blocks(language: str) -> list[str]:
    """The fenced blocks of ``language`` ("" for plain ones), in order."""
    found, current, kind = [], None, ""
    for line in DOC.splitlines():
        if line.startswith("```") and current is None:
            current, kind = [], line[3:].strip()
        elif line.startswith("```"):
            if kind == language:
                found.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return found


KUBERNETES = blocks("yaml")[2]
PLAIN = blocks("")
#: The text format, field by field (what ConnectionEnds writes).
TEXT_LINE = re.compile(r"client=\S+ server=\S+ id=(\d+|-) pid=\d+ duration=\d+\.\d{6} "
                       r"bytes_in=\d+ bytes_out=\d+ end=(closed|done|error|timeout|shed|slow|"
                       r"stopped|refused)")


def test_the_documented_command_lines_parse():
    command = json.loads(re.search(r"command: (\[.*?\])", KUBERNETES, flags=re.S).group(1))
    assert command[0] == "greensrv"
    parser().parse_args(command[1:])
    shell = next(block for block in PLAIN if block.startswith("$ greensrv"))
    parser().parse_args(shlex.split(shell.splitlines()[0][2:])[1:])
    agent = re.search(r"`(greensrv -b [^`]*)`", DOC.replace("\n", " ")).group(1)
    parser().parse_args(shlex.split(agent)[1:])


def test_the_termination_grace_covers_drain_stop_and_grace():
    command = json.loads(re.search(r"command: (\[.*?\])", KUBERNETES, flags=re.S).group(1))
    args = parser().parse_args(command[1:])
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", KUBERNETES).group(1))
    assert args.drain_delay + args.graceful_timeout + 1 < grace
    probe = KUBERNETES.split("readinessProbe:")[1]
    period = int(re.search(r"periodSeconds: (\d+)", probe).group(1))
    failures = int(re.search(r"failureThreshold: (\d+)", probe).group(1))
    assert period * failures < args.drain_delay


def test_the_example_log_line_is_the_format_written(caplog):
    example = next(block for block in PLAIN if block.startswith("client=")).strip()
    assert TEXT_LINE.fullmatch(example), example
    ends = ConnectionEnds("text")
    with caplog.at_level("INFO", logger="greensrv.access"):
        ends.ended("closed", ("203.0.113.7", 50312), ("10.0.0.1", 7000), 17, 0.0, 1432, 98112)
    assert TEXT_LINE.fullmatch(caplog.records[-1].getMessage())
