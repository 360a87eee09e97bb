"""A stable hash of text, the same in every process (Python's own `hash` is salted per process):
it places jobs in CI shards and keeps long log names apart."""

from __future__ import annotations

import zlib


def hash_text(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogateescape"))
