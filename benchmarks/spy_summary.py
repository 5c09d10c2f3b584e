"""Summarize a py-spy ``--format raw`` profile: where the event loop's busy time goes, grouped by layer.

Run: ``py-spy record -r 1000 -f raw -o /tmp/emit.spy -- .venv/bin/python benchmarks/emit.py --profile-run 100000``
then ``.venv/bin/python benchmarks/spy_summary.py /tmp/emit.spy``. Samples outside the event loop (start-up,
imports, the embedded server's helper threads) are left out; waiting in ``select`` is shown apart from busy time.
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Sequence

LAYERS = (
    (
        "huddle client layer (backend: autopipeline, cluster_pipeline, connection, autodetect)",
        ("autopipeline.py", "cluster_pipeline.py", "backend/connection.py", "autodetect.py"),
    ),
    (
        "huddle core (manager, store, scripts, event parsing, models, ids)",
        ("manager.py", "store.py", "scripts/__init__.py", "event_input.py", "models.py", "ids.py", "keys.py"),
    ),
    ("pydantic", ("pydantic",)),
    ("redis-py", ("redis/",)),
    ("asyncio event loop and sockets", ("asyncio/", "selectors.py")),
)
"""py-spy prints a frame as ``function (path:line)``, the path shortened to what follows a ``sys.path`` entry."""


def layer_of(frame: str) -> str:
    where = frame.rpartition("(")[2]
    for name, needles in LAYERS:
        if any(needle in where for needle in needles):
            return name
    return "other"


def summarize(path: str, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    idle = busy = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if "run_forever" not in stack or not count.isdigit():
                continue
            samples = int(count)
            leaf = stack.split(";")[-1]
            if leaf.startswith("EpollSelector.select") or leaf.startswith("select ("):
                idle += samples
                continue
            busy += samples
            own[leaf] += samples
            layers[layer_of(leaf)] += samples
    total = idle + busy
    print(f"event loop samples: {total}; waiting in select {idle / total:.1%}, busy {busy / total:.1%}")
    print("busy time by layer of the running frame:")
    for name, samples in layers.most_common():
        print(f"  {samples / busy:6.1%}  {name}")
    print(f"top {top} frames (own busy time):")
    for frame, samples in own.most_common(top):
        print(f"  {samples / busy:6.1%}  {frame[:140]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", help="py-spy output recorded with --format raw")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    summarize(args.profile, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
