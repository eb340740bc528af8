"""The arena's vote log: one JSON line per vote, appended, flushed and fsynced before the vote is answered.

A line is Chatbot Arena's cleaned battle record (``model_a``, ``model_b``, ``winner``, ``conversation_a``,
``conversation_b``, ``turn``, ``anony``, ``tstamp``) plus ``battle_id``, ``vote``, ``session`` (an anonymous
per-login id), ``params`` and ``time``; ``instructkit eval leaderboard --battles votes.jsonl`` reads it.

Crash safety: the whole line goes out in one ``write`` on an ``O_APPEND`` descriptor, then ``fsync``; the
client hears "recorded" only after that. A kill -9 can therefore at worst leave an unacknowledged partial
last line; on the next start it is moved to ``<votes>.torn`` (and reported), never silently dropped and
never left to break the reader.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from instructkit.jsonl import dumps

log = logging.getLogger("instructkit.serve.arena")


def _repair_tail(path: Path) -> int:
    """Move a partial last line (a crash mid-write) to ``<path>.torn``; returns the bytes moved."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return 0
        # read back to the last newline (lines are small: a few KB of conversation)
        pos, tail = size, b""
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            if b"\n" in tail[:-1] or pos == 0:
                break
        cut = tail.rfind(b"\n") + 1  # 0 when the file holds no newline at all
        frag = tail[cut:]
        try:
            complete = isinstance(json.loads(frag), dict)
        except ValueError:
            complete = False
        if complete:  # a whole record that only lacks its newline (written by another tool)
            f.seek(size)
            f.write(b"\n")
            return 0
        with open(str(path) + ".torn", "ab") as t:
            t.write(frag + b"\n")
        f.truncate(pos + cut)
        f.flush()
        os.fsync(f.fileno())
    log.warning("vote log %s ended in a partial line (%d bytes, never acknowledged): moved to %s.torn",
                path, len(frag), path)
    return len(frag)


class VoteLog:
    """Append-only JSONL of votes; ``records`` holds every vote (file + this run) for the leaderboard."""

    def __init__(self, path: str | Path):
        from instructkit.judging.ratings import load_battles

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self.torn_bytes = 0 if new else _repair_tail(self.path)
        # load_battles checks every line (model names, winner) and names the line of a bad one
        has_votes = not new and self.path.stat().st_size > 0 and self.path.read_bytes().strip()
        self.records: list[dict[str, Any]] = load_battles(self.path) if has_votes else []
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if new:  # the directory entry must survive a crash too, not only the data
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Write one vote durably (returns after fsync). Raises OSError; then nothing was acknowledged."""
        data = (dumps(record) + "\n").encode("utf-8")
        with self._lock:
            n = os.write(self._fd, data)
            if n != len(data):  # a full disk: never leave half a line in front of the next vote
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - n)
                raise OSError(f"short write to the vote log ({n} of {len(data)} bytes)")
            os.fsync(self._fd)
            self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def close(self) -> None:
        os.close(self._fd)
