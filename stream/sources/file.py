"""A local file of JSON lines, followed as it grows: the embedded quickstart's source.

One partition (``file``); a message is one line, its offset the byte position of the line's
start (so the store fences replays, as for Kafka). Only whole lines are read: a last line
without its newline is waited for. The committed position (the byte after the last committed
line) is kept in a checkpoint file beside the landing (``<checkpoint>``: JSON
``{"path": ..., "position": n}``, written atomically); a restart resumes from it. A file that
shrinks below the committed position (truncated or replaced) stops the worker with a
:class:`SourceError` rather than silently re-reading or skipping lines. Blank lines are
skipped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from stream.sources.base import AssignListener, Message, RevokeListener, Source, SourceError

__all__ = ["FileSource"]

PARTITION = "file"
_READ_CHUNK = 1 << 20


class FileSource(Source):
    ordered = True

    def __init__(self, path: Path, checkpoint: Path) -> None:
        self.path = path
        self.checkpoint = checkpoint
        self.description = f"file://{path.absolute()}"
        self._file: BinaryIO | None = None
        self._committed = self._read_checkpoint()
        self._position = self._committed
        self._buffer = b""
        self._on_assign: AssignListener | None = None
        self._announced = False

    def _read_checkpoint(self) -> int:
        try:
            data = json.loads(self.checkpoint.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise SourceError(f"checkpoint {self.checkpoint} cannot be read: {exc}") from None
        if not isinstance(data, dict) or type(data.get("position")) is not int:
            raise SourceError(f"checkpoint {self.checkpoint} is not a file position")
        if data.get("path") != str(self.path.absolute()):
            raise SourceError(
                f"checkpoint {self.checkpoint} belongs to {data.get('path')!r}, not "
                f"{self.path.absolute()} (give each file its own landing folder)"
            )
        return int(data["position"])

    def listen(self, on_assign: AssignListener, on_revoke: RevokeListener) -> None:
        self._on_assign = on_assign

    def _open(self) -> BinaryIO | None:
        if self._file is None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:
                return None
            self._file.seek(self._position)
        return self._file

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        if not self._announced and self._on_assign is not None:
            self._announced = True
            self._on_assign(PARTITION, self._committed)
        deadline = time.monotonic() + timeout_s
        while True:
            messages = self._read(max_messages)
            if messages or time.monotonic() >= deadline:
                return messages
            time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))

    def _read(self, max_messages: int) -> list[Message]:
        file = self._open()
        if file is None:
            return []
        size = os.fstat(file.fileno()).st_size
        if size < self._committed:
            raise SourceError(
                f"{self.path} shrank to {size} bytes, below the committed position "
                f"{self._committed} (was it truncated or replaced?)"
            )
        messages: list[Message] = []
        start = self._position - len(self._buffer)
        while len(messages) < max_messages:
            if b"\n" not in self._buffer:
                chunk = file.read(_READ_CHUNK)
                if not chunk:
                    break
                self._position += len(chunk)
                self._buffer += chunk
                continue
            # whole lines of the buffer, cut once (not one slice of the rest per line)
            lines = self._buffer.split(b"\n")
            rest = lines.pop()
            take = lines[: max_messages - len(messages)]
            for line in take:
                end = start + len(line) + 1
                if line.strip():
                    messages.append(Message(PARTITION, start, end, line, str(start)))
                start = end
            if len(take) < len(lines):
                self._buffer = b"\n".join([*lines[len(take) :], rest])
            else:
                self._buffer = rest
        return messages

    def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        position = max(int(str(m.token)) for m in messages)
        if position <= self._committed:
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.checkpoint.with_name(f".{self.checkpoint.name}.tmp")
        temporary.write_text(json.dumps({"path": str(self.path.absolute()), "position": position}))
        os.replace(temporary, self.checkpoint)
        self._committed = position

    def lag(self) -> dict[str, int]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return {}
        return {PARTITION: max(0, size - (self._position - len(self._buffer)))}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
