"""MCP tool-argument fuzz campaign (the docs/reliability.md fuzz row): schema-derived and hostile arguments
through the SDK's clients to a ``huddle mcp`` process (stdio) and in-memory servers as another agent and as an
observer; prints calls per tool and outcome, and every violation.

    .venv/bin/python -P benchmarks/fuzz_mcp.py --calls 5000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="fuzzed tool calls")
    args = parser.parse_args()
    # The campaign is the test itself (tests/test_fuzz_mcp.py), sized up: one definition of the checks.
    env = {**os.environ, "HUDDLE_FUZZ_MCP_EXAMPLES": str(args.calls)}
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--timeout=0"]
    command.append("tests/test_fuzz_mcp.py")
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    print(
        f"{args.calls} examples in {time.monotonic() - started:.0f} s, pytest exit code {result.returncode}"
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
