"""Reading a declared (windowed) feature view from the dbt manifest: the registry's part for
``meta.featurestore.windowed`` on the view and ``meta.featurestore.aggregation`` on each
feature column (README "Windowed features: declared once"; the semantics are
:mod:`featurestore.windows`).

:func:`read_event_model` reads the view's event model and its columns, :func:`read_aggregation`
one feature's aggregation, :func:`windowed_source` the typed :class:`WindowedSource`, and
:func:`check_view` the rules across the view (``ttl``, ``available_at``). Each problem is
appended to ``problems`` as one line naming the model and the field (the registry raises them
together as one ``RegistryError``); a function returns ``None`` when what it reads is invalid.

Rules: the event model is a model of the project; its yml declares, with a ``data_type``,
every column the view reads (``event_time`` and ``ingested_at`` timestamps, ``event_id``, the
view's keys with the view's key types, the aggregated columns); ``function`` is one of
:data:`~featurestore.windows.AGGREGATIONS`; ``sum`` and ``avg`` read an integer or decimal
column (:func:`~featurestore.data_types.aggregated_kind_of`); ``window`` and ``hop`` are
durations, the hop (default :func:`~featurestore.windows.default_hop`) at least 1 s, at most
the window, the window a whole number of hops; the feature's ``data_type`` is what the
aggregation yields (``count``: an integer; ``sum``: an integer of an integer column, a double
of a decimal one; ``avg``: a double); the view has no ``available_at`` and a ``ttl`` of at
least its longest window plus that feature's hop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from featurestore.data_types import (
    AggregatedKind,
    NotAggregatable,
    ValueType,
    aggregated_kind_of,
    value_type_of,
)
from featurestore.durations import (
    UNIT_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
    parse_seconds,
)
from featurestore.suggestions import did_you_mean
from featurestore.windows import AGGREGATIONS, Aggregation, WindowedSource, default_hop

__all__ = [
    "AGGREGATION_FIELDS",
    "WINDOWED_FIELDS",
    "WINDOWED_OPTIONAL_FIELDS",
    "EventModel",
    "check_view",
    "read_aggregation",
    "read_event_model",
    "windowed_source",
]

#: the required fields of ``meta.featurestore.windowed``
WINDOWED_FIELDS: Final = ("events", "event_time", "ingested_at", "event_id")
#: its optional fields: ``streamed`` (a boolean, default false: the stream worker updates the
#: view's tiles and the sidecar adds the stream's partials, README "Streaming")
WINDOWED_OPTIONAL_FIELDS: Final = ("streamed",)
#: the fields of a column's ``meta.featurestore.aggregation`` (``column``, ``hop`` optional)
AGGREGATION_FIELDS: Final = ("function", "column", "window", "hop")
#: aggregations a later change may add (they are not exact on both paths yet)
_NOT_YET: Final = ("min", "max", "last")
#: what each aggregation yields, by the kind of its column (None: no column or any column)
_YIELDS: Final[dict[tuple[str, AggregatedKind | None], ValueType]] = {
    ("count", None): "int",
    ("sum", "int"): "int",
    ("sum", "decimal"): "float",
    ("avg", "int"): "float",
    ("avg", "decimal"): "float",
}
_TYPE_WORDS: Final[dict[ValueType, str]] = {
    "int": "an integer (e.g. bigint)",
    "float": "a floating-point number (e.g. double)",
}
_KIND_WORDS: Final[dict[AggregatedKind, str]] = {"int": "an integer", "decimal": "a decimal"}

_FIELD_WHAT: Final = {
    "events": "dbt model (the events)",
    "event_time": "column of the event model (its event time)",
    "ingested_at": "column of the event model (its ingestion time)",
    "event_id": "column of the event model (its event id, for deduplication)",
}


@dataclass(frozen=True)
class EventModel:
    """A declared view's ``windowed`` block, its event model checked to exist."""

    view: str
    #: the event model's name and relation (``relation_name`` of its manifest node)
    events: str
    relation: str
    event_time: str
    ingested_at: str
    event_id: str
    #: the event model's declared columns: name -> data_type (None: declared without one)
    columns: Mapping[str, str | None]
    #: ``streamed: true`` declared (the stream worker writes the view)
    streamed: bool = False

    def event_column(self, column: str, where: str, problems: list[str]) -> str | None:
        """The declared data_type of one event column, or a problem (named by ``where``)."""
        if column not in self.columns:
            problems.append(
                f"{where} names column {column!r}, which event model {self.events} does not "
                f"declare{did_you_mean(column, self.columns)} (its yml must declare every column "
                "a windowed view reads, with a data_type)"
            )
            return None
        data_type = self.columns[column]
        if data_type is None:
            problems.append(
                f"{where} names column {column!r} of event model {self.events}, which has no "
                "data_type (declare it in the event model's yml)"
            )
        return data_type


def _unknown_fields(declared: Mapping[str, Any], allowed: Sequence[str]) -> str | None:
    unknown = [str(name) for name in declared if name not in allowed]
    if not unknown:
        return None
    hints = "".join(did_you_mean(name, allowed) for name in unknown)
    names = ", ".join(map(repr, unknown))
    return f"unknown field(s) {names}{hints} (allowed: {', '.join(allowed)})"


def read_event_model(
    view: str,
    declared: object,
    keys: Sequence[str],
    key_types: Mapping[str, ValueType],
    models: Mapping[str, Mapping[str, Any]],
    problems: list[str],
) -> EventModel | None:
    """The view's ``meta.featurestore.windowed`` (``declared``) read against the project's
    models by name (``models``): the event model exists and declares ``event_time`` and
    ``ingested_at`` as timestamps, ``event_id``, and the view's ``keys`` with the view's
    ``key_types``."""
    where = f"model {view}: meta.featurestore.windowed"
    if not isinstance(declared, Mapping):
        problems.append(
            f"{where} must be a mapping of {', '.join(WINDOWED_FIELDS)}, got {declared!r}"
        )
        return None
    before = len(problems)
    unknown = _unknown_fields(declared, WINDOWED_FIELDS + WINDOWED_OPTIONAL_FIELDS)
    if unknown is not None:
        problems.append(f"{where}: {unknown}")
    for name in WINDOWED_FIELDS:
        value = declared.get(name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}.{name} must name a {_FIELD_WHAT[name]}, got {value!r}")
    streamed = declared.get("streamed", False)
    if not isinstance(streamed, bool):
        problems.append(f"{where}.streamed must be true or false, got {streamed!r}")
    if len(problems) > before:
        return None
    events = str(declared["events"])
    node = models.get(events)
    if node is None:
        problems.append(
            f"{where}.events names {events!r}, which is not a model of the project"
            f"{did_you_mean(events, models)}"
        )
        return None
    columns: dict[str, str | None] = {}
    for name, spec in (node.get("columns") or {}).items():
        data_type = spec.get("data_type") if isinstance(spec, Mapping) else None
        columns[str(name)] = data_type if isinstance(data_type, str) and data_type else None
    if not columns:  # one problem, not one per column the view reads
        problems.append(
            f"{where}.events: event model {events} declares no columns: its yml must declare "
            "every column a windowed view reads (event time, ingestion time, event id, keys, "
            "aggregated columns) with a data_type"
        )
        return None
    model = EventModel(
        view=view,
        events=events,
        relation=str(node.get("relation_name") or events),
        event_time=str(declared["event_time"]),
        ingested_at=str(declared["ingested_at"]),
        event_id=str(declared["event_id"]),
        columns=columns,
        streamed=streamed,
    )
    for name in ("event_time", "ingested_at"):
        data_type = model.event_column(getattr(model, name), f"{where}.{name}", problems)
        if data_type is not None and value_type_of(data_type) != "timestamp":
            problems.append(
                f"{where}.{name}: column {getattr(model, name)!r} of event model {events} is "
                f"{data_type!r}, not a timestamp (declare timestamp or timestamp_ntz, UTC)"
            )
    model.event_column(model.event_id, f"{where}.event_id", problems)
    for key in keys:
        data_type = model.event_column(key, f"model {view}: meta.featurestore.keys", problems)
        if data_type is None or key not in key_types:
            continue
        if value_type_of(data_type) != key_types[key]:
            problems.append(
                f"model {view}: meta.featurestore.keys: key {key!r} is {data_type!r} in event "
                f"model {events} but a {key_types[key]} in the view"
            )
    return model if len(problems) == before else None


def _duration(value: object, where: str, problems: list[str]) -> int | None:
    """A window or hop in whole seconds, or a problem (finer than a second named as such)."""
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        try:
            finer = parse_seconds(value)
        except DurationError:
            finer = None
        if finer is not None and 0 < finer < 1:
            problems.append(f"{where} {value!r} is finer than one second (tiles are whole seconds)")
        else:
            problems.append(f"{where}: {exc}")
        return None
    if seconds < 1:  # the grammar already refuses it: checked so the rule holds on its own
        problems.append(f"{where} {value!r} is finer than one second (tiles are whole seconds)")
        return None
    return seconds


def read_aggregation(
    view: str,
    column: str,
    declared: object,
    model: EventModel | None,
    data_type: str,
    value_type: ValueType,
    problems: list[str],
) -> Aggregation | None:
    """Feature ``column``'s ``meta.featurestore.aggregation`` (``declared``), the hop's default
    applied; ``data_type``/``value_type`` are the feature column's. Columns of the event model
    are checked only when ``model`` is known (an invalid ``windowed`` block is reported once,
    by :func:`read_event_model`)."""
    where = f"model {view}: column {column}: meta.featurestore.aggregation"
    if not isinstance(declared, Mapping):
        problems.append(
            f"{where} must be a mapping of {', '.join(AGGREGATION_FIELDS)}, got {declared!r}"
        )
        return None
    before = len(problems)
    unknown = _unknown_fields(declared, AGGREGATION_FIELDS)
    if unknown is not None:
        problems.append(f"{where}: {unknown}")
    function = declared.get("function")
    if function not in AGGREGATIONS:
        later = f" ({function} is not offered yet)" if function in _NOT_YET else ""
        problems.append(
            f"{where}.function {function!r} is not an aggregation{later}: use one of "
            f"{', '.join(AGGREGATIONS)}"
        )
    source = declared.get("column")
    kind: AggregatedKind | None = None
    if source is None:
        if function in ("sum", "avg"):
            problems.append(f"{where}.column is required: {function} reads a column")
    elif not isinstance(source, str) or not source:
        problems.append(f"{where}.column must name a column of the event model, got {source!r}")
    elif model is not None:
        source_type = model.event_column(source, f"{where}.column", problems)
        if source_type is not None and function in ("sum", "avg"):
            try:
                kind = aggregated_kind_of(source_type)
            except NotAggregatable as exc:
                problems.append(
                    f"{where}.column: {function} needs an integer or decimal column; column "
                    f"{source!r} of event model {model.events}: {exc}"
                )
    window = _duration(declared.get("window"), f"{where}.window", problems)
    hop_declared = declared.get("hop")
    hop = (
        _duration(hop_declared, f"{where}.hop", problems)
        if hop_declared is not None
        else (default_hop(window) if window is not None else None)
    )
    if window is not None and hop is not None:
        hop_text = format_duration(hop)
        if hop > window:
            problems.append(
                f"{where}.hop {hop_text} is longer than the window {declared['window']} "
                "(a window holds whole tiles)"
            )
        elif window % hop:
            default = (
                f" (the default hop of a {format_duration(window)} window: declare a hop that "
                "divides it)"
                if hop_declared is None
                else ""
            )
            problems.append(
                f"{where}.window {declared['window']} is not a whole number of hops of "
                f"{hop_text}{default}"
            )
    if function in AGGREGATIONS and (function == "count" or kind is not None):
        yields = _YIELDS[(str(function), None if function == "count" else kind)]
        if value_type != yields:
            of = f" of {_KIND_WORDS[kind]} column" if kind is not None else ""
            problems.append(
                f"model {view}: column {column}: data_type {data_type!r} does not match "
                f"{function}{of}, which yields {_TYPE_WORDS[yields]}"
            )
    if len(problems) > before or window is None or hop is None:
        return None
    return Aggregation(
        feature=column,
        function=function,  # type: ignore[arg-type]  # checked: one of AGGREGATIONS
        column=source,
        window=str(declared["window"]).strip().lower(),
        window_seconds=window,
        hop=str(hop_declared).strip().lower() if hop_declared is not None else format_duration(hop),
        hop_seconds=hop,
    )


def windowed_source(
    model: EventModel, keys: Sequence[str], aggregations: Sequence[Aggregation]
) -> WindowedSource:
    """The view's :class:`WindowedSource`: the kinds of the summed and averaged columns, in
    the order the features first read them (a count's column is not summed: not listed)."""
    column_types: dict[str, str] = {}
    for aggregation in aggregations:
        if aggregation.function != "count" and aggregation.column is not None:
            data_type = model.columns[aggregation.column]
            if data_type is not None:
                column_types.setdefault(aggregation.column, aggregated_kind_of(data_type))
    return WindowedSource(
        events=model.events,
        events_relation=model.relation,
        event_time=model.event_time,
        ingested_at=model.ingested_at,
        event_id=model.event_id,
        keys=tuple(keys),
        column_types=tuple(column_types.items()),
        event_columns=tuple(
            (name, data_type) for name, data_type in model.columns.items() if data_type
        ),
        streamed=model.streamed,
    )


def check_view(
    view: str,
    meta: Mapping[str, Any],
    ttl_seconds: int | None,
    aggregations: Sequence[Aggregation],
    problems: list[str],
) -> None:
    """The rules across a declared view: no ``available_at``, and a ``ttl`` (``ttl_seconds``,
    None when invalid) of at least the longest window plus its hop."""
    where = f"model {view}: meta.featurestore"
    if "available_at" in meta:
        problems.append(
            f"{where}.available_at must not be declared on a windowed view: it is not "
            "needed, a row at its timestamp uses only events ingested by then, so it is "
            "knowable at its timestamp"
        )
    if ttl_seconds is None or not aggregations:
        return
    longest = max(aggregations, key=lambda a: a.window_seconds + a.hop_seconds)
    needed = longest.window_seconds + longest.hop_seconds
    unit = longest.hop[-1]  # the sum in the hop's unit (91d, not 13w): the window is whole hops
    needed_text = f"{needed // UNIT_SECONDS[unit]}{unit}"
    if ttl_seconds < needed:
        problems.append(
            f"{where}.ttl {meta.get('ttl')} is shorter than the longest window "
            f"plus its hop ({longest.feature}: {longest.window} + {longest.hop} = "
            f"{needed_text}): values would expire while their events still count"
        )
