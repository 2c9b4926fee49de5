"""Registry durations: the Python parser/formatter, and parity with the dbt macro
``featurestore.parse_duration`` (macros/parse_duration.sql) rendered by real dbt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from featurestore.durations import DurationError, format_duration, parse_duration, parse_seconds
from tests.warehouse import REPO, Warehouse

S, M, H, D, W = 1, 60, 3600, 86400, 7 * 86400

# (text, seconds) — the grammar is `<positive integer><s|m|h|d|w>`, case and surrounding
# whitespace ignored.
VALID: list[tuple[str, int]] = [
    ("1s", 1 * S),
    ("30s", 30 * S),
    ("59s", 59 * S),
    ("15m", 15 * M),
    ("60m", 60 * M),
    ("26h", 26 * H),
    ("36h", 36 * H),
    ("1d", 1 * D),
    ("30d", 30 * D),
    ("90d", 90 * D),
    ("3650d", 3650 * D),
    ("2w", 2 * W),
    ("007d", 7 * D),
    ("90D", 90 * D),
    ("26H", 26 * H),
    (" 90d ", 90 * D),
    ("\t5m\n", 5 * M),
    ("1000000w", 1_000_000 * W),
]

INVALID: list[object] = [
    "0d",
    "00h",
    "0s",
    "-1h",
    "+1h",
    "7 days",
    "90 d",
    "7",
    "d",
    "h5",
    "",
    "   ",
    "1.5h",
    "1e3s",
    "90dd",
    "1y",
    "1ms",
    "1 h",
    "\u0663d",  # ARABIC-INDIC DIGIT THREE: str.isdigit() is true, but not an ASCII digit
    "\uff15d",  # FULLWIDTH DIGIT FIVE
    "\u00b2d",  # SUPERSCRIPT TWO
    7,
    None,
    1.5,
    True,
]


@pytest.mark.parametrize(("text", "seconds"), VALID, ids=[repr(t) for t, _ in VALID])
def test_parse_valid(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", INVALID, ids=[repr(t) for t in INVALID])
def test_parse_invalid(text: object) -> None:
    with pytest.raises(DurationError, match="duration"):
        parse_duration(text)
    assert issubclass(DurationError, ValueError)


# (text, seconds) for the settings' use of the same grammar: any non-negative duration
SECONDS: list[tuple[str, float]] = [
    ("0", 0.0),
    ("0s", 0.0),
    ("0ms", 0.0),
    ("500ms", 0.5),
    ("1ms", 0.001),
    ("2s", 2.0),
    ("1.5s", 1.5),
    ("2m", 120.0),
    ("10m", 600.0),
    ("1.5h", 5400.0),
    ("1d", 86400.0),
    ("2W", 1_209_600.0),
    (" 250MS ", 0.25),
]

NOT_SECONDS: list[object] = [
    "5",  # a number needs its unit (seconds or milliseconds?)
    "0.5",
    "-1s",
    "+1s",
    "5 parsecs",
    "5 s",
    "1e3ms",
    ".5s",
    "5.s",
    "1y",
    "ms",
    "",
    "\u0663s",
    5,
    0.5,
    None,
    True,
]


@pytest.mark.parametrize(("text", "seconds"), SECONDS, ids=[repr(t) for t, _ in SECONDS])
def test_parse_seconds_valid(text: str, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds, rel=0, abs=1e-12)


@pytest.mark.parametrize("text", NOT_SECONDS, ids=[repr(t) for t in NOT_SECONDS])
def test_parse_seconds_invalid(text: object) -> None:
    with pytest.raises(DurationError, match="is not a duration"):
        parse_seconds(text)


@pytest.mark.parametrize(("text", "seconds"), VALID, ids=[repr(t) for t, _ in VALID])
def test_registry_durations_are_durations_of_the_one_grammar(text: str, seconds: int) -> None:
    """Every registry duration reads the same through the settings' parser."""
    assert parse_seconds(text) == float(seconds)


def test_the_registry_refuses_what_the_grammar_allows_beyond_whole_seconds() -> None:
    for text in ("1.5h", "500ms", "0", "0d"):
        parse_seconds(text)  # in the grammar
        with pytest.raises(DurationError, match="positive integer"):
            parse_duration(text)


FORMATTED = [
    (1, "1s"),
    (59, "59s"),
    (60, "1m"),
    (90, "90s"),
    (150 * M, "150m"),
    (H, "1h"),
    (36 * H, "36h"),
    (D, "1d"),
    (8 * D, "8d"),
    (W, "1w"),
    (2 * W, "2w"),
    (D + 1, "86401s"),
    (D + M, "1441m"),
]


@pytest.mark.parametrize(("seconds", "text"), FORMATTED)
def test_format(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -1, -60, -W, 1.5, 60.0, True, "60", None])
def test_format_refuses_what_is_not_a_positive_whole_number(seconds: Any) -> None:
    with pytest.raises(DurationError):
        format_duration(seconds)


def _shortest_spelling(seconds: int) -> str:
    """Brute force: every exact spelling, the shortest (the larger unit on a tie)."""
    units = [("s", S), ("m", M), ("h", H), ("d", D), ("w", W)]
    spellings = [(f"{seconds // size}{u}", -size) for u, size in units if seconds % size == 0]
    return min(spellings, key=lambda pair: (len(pair[0]), pair[1]))[0]


def test_format_is_the_shortest_exact_spelling_and_round_trips() -> None:
    values = {n * size for n in range(1, 200) for size in (S, M, H, D, W)}
    values |= {7 * D * k + r for k in range(1, 5) for r in (0, 1, 60, H, D)}
    for seconds in sorted(values):
        text = format_duration(seconds)
        assert text == _shortest_spelling(seconds), seconds
        assert parse_duration(text) == seconds
        assert parse_duration(text.upper()) == seconds


# -- parity with the dbt macro -----------------------------------------------------------------

# Runs in a subprocess with the Warehouse env: one dbtRunner, one `compile --inline` of all valid
# values at once, then one per invalid value (each must fail to compile on its own).
_RENDER = r"""
import json, sys
from dbt.cli.main import dbtRunner

literals = json.loads(sys.stdin.read())
messages = []
runner = dbtRunner(callbacks=[lambda event: messages.append(str(event.info.msg))])

def compile(sql):
    messages.clear()
    result = runner.invoke(["--quiet", "compile", "--no-introspect", "--no-populate-cache",
                            "--inline", sql])
    if result.success:
        return {"ok": result.result.results[0].node.compiled_code}
    return {"error": "\n".join(messages) + "\n" + str(result.exception)}

out = {
    "valid_at_once": compile(
        "{{ tojson([" + ", ".join("featurestore.parse_duration(%s)" % v for v in literals["valid"])
        + "]) }}"),
    "invalid": [compile("{{ tojson(featurestore.parse_duration(%s)) }}" % v)
                for v in literals["invalid"]],
    "named": compile(
        "{{ featurestore.parse_duration('7 days', 'some_model', 'freshness_sla') }}"),
}
print("@@RESULT@@" + json.dumps(out))
"""


def _jinja_literal(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    assert isinstance(value, str)
    return json.dumps(value)  # ASCII with \u escapes; Jinja string literals decode them


@pytest.fixture(scope="module")
def macro_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    warehouse = Warehouse(tmp_path_factory.mktemp("durations"))
    warehouse.workdir.mkdir(parents=True, exist_ok=True)
    literals = {
        "valid": [_jinja_literal(text) for text, _ in VALID],
        "invalid": [_jinja_literal(value) for value in INVALID],
    }
    proc = subprocess.run(
        [sys.executable, "-c", _RENDER],
        input=json.dumps(literals),
        cwd=REPO,
        env={**os.environ, **warehouse.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    marker = proc.stdout.rindex("@@RESULT@@")
    results: dict[str, Any] = json.loads(proc.stdout[marker + len("@@RESULT@@") :])
    return results


def test_macro_agrees_on_every_valid_value_at_once(macro_results: dict[str, Any]) -> None:
    rendered = macro_results["valid_at_once"]
    assert "ok" in rendered, rendered
    assert json.loads(rendered["ok"]) == [seconds for _, seconds in VALID]
    assert json.loads(rendered["ok"]) == [parse_duration(text) for text, _ in VALID]


def test_macro_refuses_every_invalid_value(macro_results: dict[str, Any]) -> None:
    rendered_all = macro_results["invalid"]
    assert len(rendered_all) == len(INVALID)
    for value, rendered in zip(INVALID, rendered_all, strict=True):
        with pytest.raises(DurationError):
            parse_duration(value)
        assert "error" in rendered, f"the macro accepts {value!r} (Python refuses it): {rendered}"
        assert "is not a duration" in rendered["error"], (value, rendered)


def test_macro_error_names_model_and_field(macro_results: dict[str, Any]) -> None:
    rendered = macro_results["named"]
    assert "error" in rendered
    assert "model some_model: meta.featurestore.freshness_sla = '7 days'" in rendered["error"]
