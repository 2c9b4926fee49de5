"""How a load reports: a tqdm progress bar on a terminal, JSON log lines otherwise
(python-json-logger, one object per line on stderr), and the final summary lines."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import IO, Any

from featurestore.timestamps import iso_micros
from loader.run import LoadReport, ViewResult
from loader.views import ViewSource

__all__ = ["JsonReporter", "ProgressReporter", "failure_lines", "summary_lines"]

LOGGER = "featurestore.loader"


class JsonReporter:
    """Structured log lines: ``{"timestamp", "level", "logger", "message", "event", ...}``.

    Events: ``load.start``, ``view.start``, ``view.end`` (outcome and counts; level ERROR
    with ``failures`` when the gate rejected the view, ``error`` when it failed),
    ``load.summary`` (one per view) and ``load.total``; the CLI adds ``load.error``.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        from pythonjsonlogger.json import JsonFormatter

        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp=True,
                json_default=str,
            )
        )
        self.logger = logging.getLogger(LOGGER)
        for old in list(self.logger.handlers):
            self.logger.removeHandler(old)
        self.logger.addHandler(handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False

    def _log(self, level: int, message: str, event: str, **fields: Any) -> None:
        self.logger.log(level, message, extra={"event": event, **fields})

    def error(self, message: str, exit_code: int) -> None:
        self._log(logging.ERROR, message, "load.error", exit_code=exit_code)

    def load_started(self, store: str, views: Sequence[ViewSource], full_refresh: bool) -> None:
        names = [source.name for source in views]
        self._log(
            logging.INFO,
            f"loading {', '.join(names)} into {store}",
            "load.start",
            store=store,
            views=names,
            full_refresh=full_refresh,
        )

    def view_started(self, source: ViewSource, watermark: int | None, rows: int) -> None:
        self._log(
            logging.INFO,
            f"{source.name}: {rows} row(s) to load from {source.relation}",
            "view.start",
            view=source.name,
            relation=source.relation,
            watermark=None if watermark is None else iso_micros(watermark),
            rows=rows,
        )

    def phase(self, source: ViewSource, phase: str, rows: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def view_finished(self, result: ViewResult) -> None:
        fields: dict[str, Any] = result.summary()
        level = logging.INFO
        if result.outcome == "rejected":
            level = logging.ERROR
            fields["failures"] = [failure.to_dict() for failure in result.failures]
        elif result.outcome == "failed":
            level = logging.ERROR
            fields["error"] = result.message
        message = result.message or f"{result.view}: {result.outcome}"
        self._log(level, message, "view.end", **fields)

    def load_finished(self, report: LoadReport) -> None:
        for result in report.views:
            self._log(logging.INFO, _view_line(result), "load.summary", **result.summary())
        totals = report.totals()
        level = logging.INFO if report.exit_code == 0 else logging.ERROR
        self._log(level, _total_line(report), "load.total", load_id=report.load_id, **totals)


class ProgressReporter:
    """A tqdm bar per view and phase (validate, write) on stderr, and a line per view."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: Any = None

    def error(self, message: str, exit_code: int) -> None:
        self._close()
        print(f"Error: {message}", file=self.stream)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def load_started(self, store: str, views: Sequence[ViewSource], full_refresh: bool) -> None:
        kind = "full refresh" if full_refresh else "incremental"
        names = ", ".join(source.name for source in views)
        print(f"loading {names} into {store} ({kind})", file=self.stream)

    def view_started(self, source: ViewSource, watermark: int | None, rows: int) -> None:
        pass

    def phase(self, source: ViewSource, phase: str, rows: int) -> None:
        from tqdm import tqdm

        self._close()
        self._bar = tqdm(
            total=rows,
            desc=f"{source.name} {phase}",
            unit="rows",
            unit_scale=True,
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def view_finished(self, result: ViewResult) -> None:
        self._close()  # the summary lines (stdout) follow at the end
        if result.outcome == "rejected":
            for line in failure_lines(result):
                print(line, file=self.stream)
        elif result.outcome == "failed":
            print(f"  error: {result.message}", file=self.stream)

    def load_finished(self, report: LoadReport) -> None:
        self._close()


def _view_line(result: ViewResult) -> str:
    return (
        f"{result.view}: {result.outcome}, {result.rows_read:,} read, "
        f"{result.rows_written:,} written, {result.rows_skipped:,} skipped as older, "
        f"{result.rows_expired:,} expired, {result.rows_rejected:,} rejected, "
        f"{result.seconds:.2f} s, {result.rows_per_second:,.0f} rows/s"
    )


def _total_line(report: LoadReport) -> str:
    totals = report.totals()
    return (
        f"total: {totals['views']} view(s), {totals['rows_read']:,} read, "
        f"{totals['rows_written']:,} written, {totals['rows_skipped']:,} skipped as older, "
        f"{totals['rows_expired']:,} expired, {totals['rows_rejected']:,} rejected, "
        f"{report.seconds:.2f} s, {totals['rows_per_second']:,.0f} rows/s, "
        f"exit code {report.exit_code}"
    )


def summary_lines(report: LoadReport) -> list[str]:
    """The final summary: one line per view, then the total."""
    return [_view_line(result) for result in report.views] + [_total_line(report)]


def failure_lines(result: ViewResult) -> list[str]:
    """A rejected view's failed expectations with their sample offending rows."""
    lines = [f"  {result.message}"]
    for failure in result.failures:
        lines.append(f"  - {failure.describe()}")
        for row in failure.samples:
            lines.append(f"      {json.dumps(row, default=str)}")
    return lines
