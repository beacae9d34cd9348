"""The PROXY protocol's benchmarks run and report what they claim (figures are not asserted:
speed is measured, not tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import need_program

ROOT = Path(__file__).resolve().parents[2]


def run_script(*argv: str, timeout: float) -> str:
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_filters_benchmark_reports_proxy_headers_per_second():
    out = run_script("benchmarks/filters.py", "--only", "PROXY", "--seconds", "0.02", timeout=60)
    rows = [line for line in out.splitlines() if line.startswith("| PROXY v")]
    assert len(rows) == 5
    assert all(float(row.split("|")[3]) > 0 for row in rows)


def test_proxy_churn_runs_through_haproxy_without_errors():
    need_program("haproxy", "haproxy")
    need_program("cc", "gcc")
    out = run_script("benchmarks/proxy_churn.py", "--duration", "1", "--warmup", "0.2",
                     "--repeat", "1", timeout=120)
    assert "send-proxy-v2 crc32c,unique-id:" in out and "vs plain" in out


@pytest.mark.timeout(200)
def test_the_fleet_benchmark_runs_through_haproxy_without_errors():
    """benchmarks/fleet.py (docs/fleet.md's figures): one short run of each side; the script
    itself exits non-zero on any error the load generator counted."""
    need_program("haproxy", "haproxy")
    need_program("cc", "gcc")
    out = run_script("benchmarks/fleet.py", "--duration", "1", "--warmup", "0.2",
                     "--repeat", "1", timeout=180)
    assert "one node direct: rr" in out and "fleet via HAProxy: rr" in out
