"""CI sharding: `dlopt gate CONFIG --shard K/N` runs a deterministic Nth of the variants.

Variant i (in the config's order, after `--only`) belongs to shard i mod N + 1, so the N shards
split the variants evenly and every variant is in exactly one of them. The FP32 reference is in
every shard: speed is judged against the reference measured on the same machine, and each shard
may run on another one. `dlopt report merge` joins the shards' reports (`gate.merge`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from dlopt.errors import ConfigError

T = TypeVar("T")
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def pick(self, items: Sequence[T]) -> list[T]:
        """This shard's share of `items` (round robin in their order)."""
        return [
            item for position, item in enumerate(items) if position % self.count == self.index - 1
        ]


def parse_shard(text: str) -> Shard:
    """`K/N` with 1 <= K <= N; raises ConfigError."""
    match = _SHARD.match(text)
    if match is None:
        raise ConfigError(f"--shard {text!r} is not K/N", "e.g. --shard 2/4: the second of four")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ConfigError(
            f"--shard {text!r} is out of range", "K and N are whole numbers with 1 <= K <= N"
        )
    return Shard(index, count)
