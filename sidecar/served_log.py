"""The served-vector log's writer (the contract: :mod:`featurestore.served_log`).

On the request path (:meth:`ServedLog.offer`, after the response is sent) only the sampled
key positions are picked (a hash per key; none at rate 1) and one tuple is appended to a
bounded queue: the response body itself is kept, already encoded, and a writer thread
parses it into rows later. A full queue drops the request's vectors and counts them
(``featurestore_sidecar_served_log_dropped_total``): logging never waits, never blocks the
event loop, and a failed write (a full disk) loses log rows, counted and logged, never a
response. Files are rotated by size and age and completed by a rename; :meth:`close`
(at shutdown) writes what is queued and completes the open file.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

import orjson

from featurestore.online.layout import entity_token
from featurestore.served_log import FILE_PREFIX, TEMP_SUFFIX, entity_salt, key_hash, threshold
from sidecar.metrics import Metrics

__all__ = ["ServedLog"]

log = logging.getLogger("sidecar")

#: (request time, entity, key columns, [(position, key)], response body)
_Entry = tuple[dt.datetime, str, tuple[str, ...], list[tuple[int, tuple[str, ...]]], bytes]
_WAKE_S: Final = 0.5


class ServedLog:
    """Samples served vectors and writes them, from a thread, as the contract says."""

    def __init__(
        self,
        directory: Path,
        rate: float,
        metrics: Metrics,
        *,
        max_queued: int = 10_000,
        rotate_bytes: int = 64 << 20,
        rotate_s: float = 60.0,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise OSError(f"the served-vector log folder {directory} is not writable")
        self.directory = directory
        self.rate = rate
        self._bound = threshold(rate)
        self._all = rate >= 1.0
        self._salts: dict[str, int] = {}
        self.metrics = metrics
        self.max_queued = max_queued
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self._queue: deque[_Entry] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._host = socket.gethostname().replace("-", "_")[:40] or "host"
        self._sequence = 0
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._written = 0
        self._thread = threading.Thread(target=self._run, name="served-log", daemon=True)
        self._thread.start()

    # --- the request path ---------------------------------------------------------------

    def offer(
        self,
        at: dt.datetime,
        entity: str,
        key_columns: tuple[str, ...],
        keys: Sequence[tuple[str, ...]],
        body: bytes,
    ) -> None:
        """Queue a request's sampled vectors (``keys`` in request order, ``body`` the
        response sent); returns at once."""
        if self._all:
            picked = list(enumerate(keys))
        else:
            bound, salt = self._bound, self._salts.get(entity)
            if salt is None:
                salt = self._salts[entity] = entity_salt(entity)
            picked = [(i, key) for i, key in enumerate(keys) if key_hash(salt, key) < bound]
        if not picked:
            return
        if len(self._queue) >= self.max_queued:
            self.metrics.served_log_dropped.inc()
            return
        self._queue.append((at, entity, key_columns, picked, body))
        if len(self._queue) == 1:
            self._wake.set()

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(_WAKE_S)
            self._wake.clear()
            self._drain()
            if self._file is not None and time.monotonic() - self._opened >= self.rotate_s:
                self._complete()
            if self._stopping and not self._queue:
                self._complete()
                return

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            entry = queue.popleft()
            try:
                lines = _rows(entry)
            except Exception as exc:  # a body that does not parse: a bug, not a reason to stop
                self.metrics.served_log_errors.inc()
                log.warning("served vectors not logged: %s", exc)
                continue
            if not lines:
                continue
            try:
                self._write(b"".join(lines), len(lines))
            except OSError as exc:
                self.metrics.served_log_errors.inc()
                log.warning("served vectors not logged (%d rows): %s", len(lines), exc)
                self._abandon()

    def _write(self, data: bytes, rows: int) -> None:
        if self._file is None:
            self._open()
        assert self._file is not None
        self._file.write(data)
        self._written += len(data)
        self.metrics.served_log_rows.inc(rows)
        if self._written >= self.rotate_bytes:
            self._complete()

    def _open(self) -> None:
        self._sequence += 1
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{FILE_PREFIX}{stamp}-{self._host}-{os.getpid()}-{self._sequence}.jsonl"
        self._path = self.directory / name
        self._file = open(str(self._path) + TEMP_SUFFIX, "wb")  # noqa: SIM115 - kept open
        self._opened = time.monotonic()
        self._written = 0

    def _complete(self) -> None:
        """Close the open file and give it its final name (readers see it from now on)."""
        if self._file is None or self._path is None:
            return
        try:
            self._file.close()
            os.replace(str(self._path) + TEMP_SUFFIX, self._path)
        except OSError as exc:
            self.metrics.served_log_errors.inc()
            log.warning("served-vector log file %s not completed: %s", self._path, exc)
        self._file = None
        self._path = None

    def _abandon(self) -> None:
        """After a failed write: close the file as it is (its rows up to the failure stay
        readable once renamed) and start a new one at the next write."""
        self._complete()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, complete the open file, stop the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)


_RESULT_START: Final = b'{"entity_key":'


def _results(body: bytes, positions: list[int]) -> dict[int, dict[str, object]]:
    """The results at ``positions`` of a response body, parsing only those: every result
    starts with ``{"entity_key":`` (those bytes cannot occur inside a JSON string, where
    quotes are escaped), results are separated by ``,`` and the last is followed by ``]}``."""
    if len(positions) > 8:  # most of them, likely: one parse of the whole body is cheaper
        results = orjson.loads(body)["results"]
        return {position: results[position] for position in positions}
    starts = []
    found = body.find(_RESULT_START)
    while found != -1:
        starts.append(found)
        found = body.find(_RESULT_START, found + 1)
    out = {}
    for position in positions:
        start = starts[position]
        end = starts[position + 1] - 1 if position + 1 < len(starts) else len(body) - 2
        out[position] = orjson.loads(body[start:end])
    return out


def _rows(entry: _Entry) -> list[bytes]:
    """The log lines of one queued request."""
    at, entity, columns, picked, body = entry
    results = _results(body, [position for position, _ in picked])
    request_at = (
        at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if at.tzinfo
        else (at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    )
    request_id = os.urandom(8).hex()
    lines = []
    dumps = orjson.dumps
    head = b'{"request_at":"%s","request_id":"%s","entity":%s,' % (
        request_at.encode(),
        request_id.encode(),
        dumps(entity),
    )
    names: dict[str, bytes] = {}
    tails: dict[tuple[object, object], bytes] = {}
    for position, key in picked:
        # the fields of a key's rows but the feature's, encoded once per key; then per feature
        # only its name, value, status and reason (the field order of FIELDS)
        key_head = b'%b"entity_key":%b,"keys":%b,"feature":' % (
            head,
            dumps(entity_token(key)),
            dumps(dict(zip(columns, key, strict=True))),
        )
        features: dict[str, dict[str, object]] = results[position]["features"]  # type: ignore[assignment]
        for feature, answer in features.items():
            name = names.get(feature)
            if name is None:
                name = names[feature] = dumps(feature)
            tail = tails.get((answer["status"], answer.get("reason")))
            if tail is None:
                tail = tails[(answer["status"], answer.get("reason"))] = (
                    b',"status":%b,"reason":%b}\n'
                    % (dumps(answer["status"]), dumps(answer.get("reason")))
                )
            lines.append(b'%b%b,"value":%b%b' % (key_head, name, dumps(answer["value"]), tail))
    return lines
