"""HTTP API fuzz campaign (the docs/reliability.md fuzz row): schemathesis against a real ``huddle serve`` with
a token of each role, per operation (positive + negative data) and stateful linked sequences; prints requests
per operation and role, statuses, and every distinct failure with a curl command.

    .venv/bin/python -P benchmarks/fuzz_http.py --examples 25 --stateful 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from api_support import ApiServer
from http_fuzz_support import ROLES, HttpFuzz, seed

from huddle import EmbeddedRedis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25, help="examples per operation and role")
    parser.add_argument("--stateful", type=int, default=60, help="state machine runs per role (admin, alice)")
    parser.add_argument("--steps", type=int, default=10, help="steps per state machine run")
    args = parser.parse_args()
    with EmbeddedRedis() as redis_server:
        server = ApiServer(redis_server.url)
        seed(server)
        fuzz = HttpFuzz(server, redis_server.url)
        started = time.monotonic()
        fuzz.per_operation(args.examples)
        fuzz.appends(args.examples * 10)
        per_operation = fuzz.requests
        links = 0
        for role in ("admin", "alice"):
            links = max(links, fuzz.stateful(role, examples=args.stateful, steps=args.steps))
        stateful = fuzz.requests - per_operation
        elapsed = time.monotonic() - started
        fuzz.close()
        code = server.stop()
    print(
        f"schemathesis per operation x role ({', '.join(ROLES)}) + model-built appends: {per_operation} requests"
    )
    print(f"stateful (admin, alice; {links} inferred links): {stateful} requests")
    print(f"total {fuzz.requests} requests in {elapsed:.0f} s; server exit code {code}")
    print(fuzz.table())
    print(f"failures: {fuzz.failure_count} ({len(fuzz.failures)} distinct)")
    print("exceptions in the server log:", *fuzz.log.errors() or ["none"], sep="\n  ")
    for text in fuzz.failures.values():
        print("\n" + text)
    return 1 if fuzz.failures or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
