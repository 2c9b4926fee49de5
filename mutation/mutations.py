"""The curated mutations of the contract code that `python -m mutation` applies one at a time.

Each is an exact text replacement in one file: ``original`` must occur exactly once in
``file`` (the check refuses to run otherwise, and ``tests/test_mutation_list.py`` fails CI, so
the list cannot rot silently when code moves). ``tests`` are the pytest node ids or files
that should catch it: the smallest set that does. ``workers`` is pytest-xdist's ``-n`` for
that set (1: no xdist). A mutation that no test can kill because it does not change
behaviour says why in ``equivalent`` and is left out of the kill rate. ``canary`` mutations
break the code outright where only a subprocess runs it: they prove that the `featurestore`
CLI and `python -m sidecar` started by the tests import the mutated copy, and the run
refuses to report if one survives.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    """One small, realistic bug: ``original`` replaced by ``replacement`` in ``file``."""

    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    description: str
    workers: int = 1
    equivalent: str | None = None
    canary: bool = False


# the tests in which time moves (another issue-17 deliverable): included once they exist
_MOVING_TIME = "tests/sidecar/test_time.py"

_HISTORICAL = "tests/core/test_historical.py::test_crafted_edge_cases"
_CONTRACT = "tests/online/test_store_contract.py"


def _store(kind: str, *tests: str) -> tuple[str, ...]:
    return tuple(f"{_CONTRACT}::{test}[{kind}]" for test in tests)


# loader/run.py: a view's rows are written, then its watermark advances
_WRITE = (
    "                _write(store, source, spill, batch_rows, clock, result, reporter, writers)\n"
)
_ADVANCE = (
    "                # only now is every row of this view in the store: advance the watermark\n"
    "                before = result.watermark_before\n"
    "                if before is not None and not full_refresh:\n"
    "                    max_ver = max(max_ver, before)\n"
    "                result.watermark_after = max_ver\n"
    "                store.set_watermark(source.name, result.watermark_after)\n"
)


MUTATIONS: tuple[Mutation, ...] = (
    # --- canaries: subprocesses must run the mutated copy --------------------------------
    Mutation(
        name="canary-cli-subprocess",
        file="cli/main.py",
        original='    """Warehouse-native feature store: build, inspect and export features."""\n',
        replacement=(
            '    """Warehouse-native feature store: build, inspect and export features."""\n'
            "    raise SystemExit(97)\n"
        ),
        tests=("tests/cli/test_cli.py::test_training_set_usage_error_exits_2",),
        description="the featurestore CLI exits 97 before any command (run as a subprocess)",
        canary=True,
    ),
    Mutation(
        name="canary-sidecar-subprocess",
        file="sidecar/__main__.py",
        original='    serve_command(prog_name="featurestore serve")\n',
        replacement="    raise SystemExit(97)\n",
        tests=("tests/sidecar/test_faults.py::test_bad_configuration_fails_at_startup",),
        description="`python -m sidecar` exits 97 at start (run as a subprocess)",
        canary=True,
    ),
    # --- the as-of join (macros/as_of_join.sql; DuckDB runs duckdb__ and the shared TTL) ---
    Mutation(
        name="asof-ttl-edge",
        file="macros/as_of_join.sql",
        original="{{ alias }}.__fs_ts >= {{ dbt.dateadd(",
        replacement="{{ alias }}.__fs_ts > {{ dbt.dateadd(",
        tests=(_HISTORICAL,),
        description="a value exactly ttl old is nulled (TTL edge off by one)",
    ),
    Mutation(
        name="asof-availability-earlier",
        file="macros/as_of_join.sql",
        original="case when r.{{ fv.available_at }} > r.{{ fv.timestamp }} then",
        replacement="case when r.{{ fv.available_at }} < r.{{ fv.timestamp }} then",
        tests=(_HISTORICAL,),
        description="duckdb__: the as-of key is the earlier of feature_at and available_at",
    ),
    Mutation(
        name="asof-spine-strict",
        file="macros/as_of_join.sql",
        original="{% endfor %}spine.{{ spine_timestamp }} >= {{ alias }}.__fs_asof",
        replacement="{% endfor %}spine.{{ spine_timestamp }} > {{ alias }}.__fs_asof",
        tests=(_HISTORICAL,),
        description="duckdb__: a row whose as-of key equals the spine time is not used",
    ),
    # --- a window bound of a feature view ---------------------------------------------------
    Mutation(
        name="window-7d-closed",
        file="models/features/user_transaction_features.sql",
        original="{{ dbt.dateadd('day', short_window_days, 'transacted_at') }} as feature_at,",
        replacement=(
            "{{ dbt.dateadd('second', 1, dbt.dateadd('day', short_window_days,"
            " 'transacted_at')) }} as feature_at,"
        ),
        tests=("tests/dbt/test_feature_views.py::test_user_transaction_features_match_reference",),
        description="the 7-day window is closed: a transaction exactly 7 days old still counts",
    ),
    # --- each store's newer-wins rule -------------------------------------------------------
    Mutation(
        name="redis-newer-wins-equal",
        file="featurestore/online/redis_store.py",
        original="(sts == ts and tonumber(stored[2]) >= tonumber(ARGV[3]))",
        replacement="(sts == ts and tonumber(stored[2]) > tonumber(ARGV[3]))",
        tests=_store(
            "redis",
            "test_newer_wins_on_the_ts_ver_pair",
            "test_writing_the_same_batch_twice_changes_nothing",
        ),
        description="Redis Lua script: an equal (ts, ver) pair overwrites the stored record",
    ),
    Mutation(
        name="sqlite-newer-wins-equal",
        file="featurestore/online/sqlite_store.py",
        original="where (excluded.ts, excluded.ver) > (online_records.ts, online_records.ver)",
        replacement="where (excluded.ts, excluded.ver) >= (online_records.ts, online_records.ver)",
        tests=_store(
            "sqlite",
            "test_newer_wins_on_the_ts_ver_pair",
            "test_writing_the_same_batch_twice_changes_nothing",
        ),
        description="SQLite upsert: an equal (ts, ver) pair overwrites the stored record",
    ),
    Mutation(
        name="dynamodb-newer-wins-ver",
        file="featurestore/online/dynamodb_store.py",
        original="(ts = :ts AND ver < :ver)",
        replacement="(ts = :ts AND ver > :ver)",
        tests=_store("dynamodb", "test_newer_wins_on_the_ts_ver_pair"),
        description="DynamoDB condition: on equal ts the older ver wins",
    ),
    # --- expiry when reading (exp > now) ----------------------------------------------------
    Mutation(
        name="redis-read-expiry-edge",
        file="featurestore/online/redis_store.py",
        original="(exp := int(exp)) <= now_s",
        replacement="(exp := int(exp)) < now_s",
        tests=_store("redis", "test_records_are_not_read_once_their_exp_has_passed"),
        description="Redis read: a record is still served at exp == now",
    ),
    Mutation(
        name="sqlite-read-expiry-edge",
        file="featurestore/online/sqlite_store.py",
        original="and exp > ?",
        replacement="and exp >= ?",
        tests=_store("sqlite", "test_records_are_not_read_once_their_exp_has_passed"),
        description="SQLite read: a record is still served at exp == now",
    ),
    Mutation(
        name="dynamodb-read-expiry-edge",
        file="featurestore/online/dynamodb_store.py",
        original='exp = int(Decimal(item["exp"]["N"]))\n            if exp <= now_s:',
        replacement='exp = int(Decimal(item["exp"]["N"]))\n            if exp < now_s:',
        tests=_store("dynamodb", "test_records_are_not_read_once_their_exp_has_passed"),
        description="DynamoDB read: a record is still served at exp == now",
    ),
    Mutation(
        name="sidecar-cached-expiry-one-view",
        file="sidecar/retrieval.py",
        original="entry if type(entry) is tuple and entry[EXP] > now_s",
        replacement="entry if type(entry) is tuple",
        tests=(
            f"{_MOVING_TIME}::test_one_view_a_record_cached_while_fresh_is_not_served_after_its_exp",
            "tests/sidecar/test_serving.py::test_values_past_their_ttl_are_served_as_defaults",
        ),
        description="one view: a cached record is served as PRESENT after its own exp",
    ),
    Mutation(
        name="sidecar-cached-expiry-multi-view",
        file="sidecar/retrieval.py",
        original="                if type(entry) is tuple and entry[EXP] > now_s:",
        replacement="                if type(entry) is tuple:",
        tests=(
            f"{_MOVING_TIME}::test_several_views_each_record_expires_at_its_own_exp",
            "tests/sidecar/test_serving.py::test_values_past_their_ttl_are_served_as_defaults",
        ),
        description="several views: a cached record is served as PRESENT after its own exp",
    ),
    # --- the sidecar: key order, cache, breaker, scopes -------------------------------------
    Mutation(
        name="sidecar-key-order",
        file="sidecar/retrieval.py",
        original="unique = keys if len(keys) == 1 else list(dict.fromkeys(keys))",
        replacement="unique = keys if len(keys) == 1 else sorted(dict.fromkeys(keys))",
        tests=("tests/sidecar/test_serving.py::test_served_values_equal_the_warehouse",),
        description="answers follow the sorted keys, not the order of the request",
        workers=2,
    ),
    Mutation(
        name="cache-ttl-edge",
        file="sidecar/cache.py",
        original="        if expires_at <= now:\n",
        replacement="        if expires_at < now:\n",
        tests=("tests/sidecar/test_cache.py",),
        description="the cache serves an entry at exactly put time + ttl",
    ),
    Mutation(
        name="breaker-threshold",
        file="sidecar/breaker.py",
        original="if self._failures >= self.failure_threshold:",
        replacement="if self._failures > self.failure_threshold:",
        tests=("tests/sidecar/test_breaker.py",),
        description="the breaker opens after threshold + 1 consecutive failures",
    ),
    Mutation(
        name="auth-feature-scope-entity",
        file="sidecar/auth.py",
        original=(
            "        return (self.entities is None or entity in self.entities) and (\n"
            "            self.features is None or feature in self.features\n"
            "        )\n"
        ),
        replacement="        return self.features is None or feature in self.features\n",
        tests=(
            "tests/sidecar/test_auth.py",
            "tests/sidecar/test_selection.py",
            "tests/sidecar/test_registry_document.py",
        ),
        description="a key scoped to entities may read features of other entities",
    ),
    Mutation(
        name="selection-memo-key",
        file="sidecar/selection.py",
        original="memo_key = (principal.digest, entity_name, tuple(names))",
        replacement='memo_key = (b"", entity_name, tuple(names))',
        tests=("tests/sidecar/test_selection.py",),
        description="the selection memo ignores the API key: a scoped key reuses another's",
    ),
    # --- the loader: watermark and validation gate ------------------------------------------
    Mutation(
        name="loader-watermark-inclusive",
        file="loader/duckdb_warehouse.py",
        original='where = f" where {ver} > make_timestamp(',
        replacement='where = f" where {ver} >= make_timestamp(',
        tests=("tests/loader/test_load.py::test_load_incremental_and_full_refresh[sqlite]",),
        description="an incremental load re-reads rows whose as-of time equals the watermark",
    ),
    Mutation(
        name="loader-watermark-before-write",
        file="loader/run.py",
        original=_WRITE + _ADVANCE,
        replacement=_ADVANCE + _WRITE,
        tests=(
            "tests/loader/test_crash.py",
            "tests/loader/test_load.py::test_store_going_away_mid_load_stops_the_run",
        ),
        description="the watermark is advanced before the view's rows are written",
    ),
    Mutation(
        name="validation-gate-ver-ts",
        file="loader/validation.py",
        original="        column_A=source.ver_column,\n        column_B=source.ts_column,\n",
        replacement="        column_A=source.ver_column,\n        column_B=source.ver_column,\n",
        tests=("tests/loader/test_load.py::test_gate_names_the_failed_expectation_and_its_rows",),
        description="the gate compares ver with itself: rows with ver < ts are loaded",
    ),
    # --- the registry and the duration grammar ----------------------------------------------
    Mutation(
        name="registry-bool-is-not-int",
        file="featurestore/registry.py",
        original="return isinstance(value, int) and not isinstance(value, bool)",
        replacement="return isinstance(value, int)",
        tests=(
            "tests/core/test_registry.py::test_every_pair_of_declared_type_and_default_type",
            "tests/core/test_registry.py::test_invalid_metadata_is_refused",
        ),
        description="the registry accepts a boolean default for an integer feature",
    ),
    Mutation(
        name="duration-zero",
        file="featurestore/durations.py",
        original='"." in parsed[0] or int(parsed[0]) <= 0:',
        replacement='"." in parsed[0] or int(parsed[0]) < 0:',
        tests=("tests/core/test_durations.py::test_parse_invalid",),
        description="the registry's duration parser accepts a zero duration (`0d`)",
    ),
)
