"""The test side of the writer process (``writer.py``): one JSON command per line, one JSON answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

WRITER = Path(__file__).with_name("writer.py")


class WriterProcess:
    """A separate Python process that writes sessions through the library (not through the browser's API)."""

    def __init__(self, redis_url: str, namespace: str, max_events_per_session: int | None = None) -> None:
        extra = [] if max_events_per_session is None else [str(max_events_per_session)]
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), redis_url, namespace, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def do(self, op: str, **fields: Any) -> dict[str, Any]:
        """Run one command; raise with the writer's message if it failed."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the writer process exited ({self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"writer {op} failed: {answer['error']}")
        return answer

    def close(self) -> None:
        """End the process (closing stdin ends its loop)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
