"""Fuzz support: garbage values, byte-level mutations of text, and a tally of outcomes per input surface."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from huddle import HuddleError

GARBAGE_TEXT = (
    "",
    "abc",
    "-1",
    "1e309",
    "nan",
    "99999999999999999999999",
    "{",
    "[]",
    '{"a":1}',
    "0-0",
    "\x00\xff",
)


def garbage_values(rng: random.Random) -> list[str]:
    """Texts that are wrong for almost any stored field, plus a random one."""
    noise = "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(1, 40)))
    return [*GARBAGE_TEXT, noise]


def mutate_text(text: str, rng: random.Random) -> str:
    """One random corruption of ``text``: a flipped bit, a cut, a dropped or doubled character."""
    if not text:
        return "x"
    data = bytearray(text.encode())
    at = rng.randrange(len(data))
    kind = rng.randrange(4)
    if kind == 0:
        data[at] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[at:]
    elif kind == 2:
        del data[at]
    else:
        data.insert(at, data[at])
    return data.decode(errors="replace")


@dataclass
class Tally:
    """Inputs tried on one surface and how each ended."""

    surface: str
    outcomes: Counter[str] = field(default_factory=Counter)
    untyped: list[str] = field(default_factory=list)
    samples: dict[str, str] = field(default_factory=dict)
    """The first label that ended in each outcome (to see what a surface's inputs mostly hit)."""

    @property
    def inputs(self) -> int:
        """How many inputs were tried."""
        return sum(self.outcomes.values())

    async def attempt(self, label: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``call``: a HuddleError counts as 'typed', any other exception is recorded as untyped."""
        try:
            result = await call()
        except HuddleError as exc:
            self.outcomes[f"typed:{type(exc).__name__}"] += 1
            self.samples.setdefault(type(exc).__name__, f"{label}: {exc}"[:200])
            return exc
        except Exception as exc:  # the very thing the fuzzer hunts
            self.outcomes["untyped"] += 1
            self.untyped.append(f"{label}: {type(exc).__name__}: {str(exc)[:120]}")
            return exc
        self.outcomes["accepted"] += 1
        return result

    def summary(self) -> str:
        """One line for the test output (docs/reliability.md quotes these)."""
        return f"{self.surface}: {self.inputs} inputs {dict(self.outcomes)} untyped={len(self.untyped)}"
