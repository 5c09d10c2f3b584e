"""``huddle demo --cluster`` runs the collaboration example on a local 3-master cluster it starts and stops."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.cluster


def test_demo_on_a_local_cluster_is_gapless_and_spreads_sessions_over_three_masters() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "huddle", "demo", "--cluster"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "gapless, in order" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "127.0.0.1:" in line and "│" in line]
    assert len(rows) == 3
    assert sum(int(row.split("│")[2]) for row in rows) == 30
