{#-
    Windowed aggregation features declared once: the whole SQL of a declared feature view
    (output='history') and of its online model (output='tiles'), generated from the view's
    declaration (featurestore.windowed_declaration: yml meta.featurestore.windowed, keys, and
    each feature column's meta.featurestore.aggregation {function, column, window, hop}).

    The rule (exactly featurestore/windows.py, the contract)
      * Events: the rows of the declared event model. Rows with a null key, event id, event
        time or ingestion time are left out. Copies sharing an event id are one event: the
        copy ingested first is kept (ties: the earliest event time, then the smallest values
        of the view's keys and aggregated columns, in declared order, nulls last); the other
        copies are duplicates and never count.
      * Effective time t_e = min(event_time, ingested_at): an event whose event time is later
        than its ingestion time (a producer clock ahead) is placed at its ingestion time.
      * Tiles: tile k of hop H holds the events with k*H <= t_e < (k+1)*H, in whole seconds
        since the Unix epoch (UTC).
      * An event counts at T if and only if ingested_at <= T (it is known; late events count
        from their ingestion, never before) and floor_H(T) - W <= t_e: the window starts at
        floor_H(T) - W (inclusive, aligned to the hop) and ends at T (inclusive). It leaves
        at floor_H(t_e) + H + W (exclusive: at that instant it no longer counts); an event
        ingested at or after that instant never counts.
      * Values over the events that count: count -> bigint (of events, or of the non-null
        values of `column`), sum -> bigint for an integer column, double for a decimal one
        (the exact decimal sum cast once), avg -> double: cast(exact sum as double) / count of
        the non-null values, null when there is none. Empty window: count and sum 0, avg null.

    output='history' (the feature view; incremental delete+insert, unique_key: the keys)
      Columns: keys, feature_at, last_ingested_at (the latest ingested_at of the entity's
      counting events ingested at or before feature_at: bookkeeping for incremental runs),
      then each feature. One row per entity and change instant: the ingested_at of every
      event that counts at all (ingested before it leaves) and every leave instant
      floor_H(t_e) + H + W of such an event, per (hop, window) of the view. The value at a
      row holds until the entity's next row, so as_of_join at T returns the rule at T.
      Values are running sums of exact +/- deltas (decimal, never double, until the final
      cast or division).
      Incremental: entities with events ingested after
      ingestion_watermark('last_ingested_at') are recomputed for their rows at or after R,
      the earliest ingested_at of their new events, from their events still in some window
      at R (an event leaving before R adds and removes its deltas before R), with
      last_ingested_at continued from the entity's stored rows before R, which are kept as
      they are. The model's unique_key is the entity's keys, so every stored row of a changed
      entity is replaced: a row at an instant that stopped being one (an event's first copy
      replaced upstream by an earlier-ingested one) goes away. The same rows as a full
      refresh.

    output='tiles' (the view's online model; `view` names the feature view)
      Over the events ingested at or before the cutoff C (var online_as_of, UTC
      'YYYY-MM-DD HH:MM:SS', default now; for a streamed view, windowed.streamed: true, C is
      that instant floored to the hour, a whole ingestion bucket of the stream's partials, so
      that the stream owns exactly the events ingested after C): one row per entity, hop and tile holding at least
      one such event, for the tiles still live at C (tile_start + H + the longest window of
      hop H > C). Columns: keys, <view>__feature_at (the entity's latest ingested_at among
      the events in its rows, on every row of the entity), <view>__as_of_at (C),
      <view>__changed_at (= <view>__feature_at), as_of_at (C), tile_hop_seconds (bigint),
      tile_start (timestamp), then per feature f: count -> f__count (bigint); sum -> f__sum
      (bigint, or decimal(38, s) for a decimal(p, s) column); avg -> f__count (bigint, the
      non-null values) and f__sum; null on rows of another hop than f's. Every row of an
      entity is there (the loader writes an entity's tile set whole).

    Portable SQL (window functions, mod, greatest, dbt.dateadd / dbt.datediff), the same on
    DuckDB and Snowflake; timestamps before 1970 are not supported (tile arithmetic in
    seconds since the epoch).
-#}
{% macro windowed_features(view=none, output='history') %}
    {{ return(adapter.dispatch('windowed_features', 'featurestore')(view, output)) }}
{% endmacro %}


{% macro default__windowed_features(view, output) %}
    {%- if output not in ['history', 'tiles'] -%}
        {{ exceptions.raise_compiler_error("model " ~ model.name ~ ": windowed_features output='" ~ output ~ "' is not 'history' or 'tiles'") }}
    {%- endif -%}
    {%- if output == 'tiles' and view is none -%}
        {{ exceptions.raise_compiler_error("model " ~ model.name ~ ": windowed_features(output='tiles') needs the view's name") }}
    {%- endif -%}
    {%- if view is not none -%}
        {%- set view_relation = ref(view) -%}
    {%- endif -%}
    {%- if not execute -%}
        {{ return("select 1 as __fs_unparsed") }}
    {%- endif -%}
    {%- set d = featurestore.windowed_declaration(view) -%}
    {%- set graph_nodes = graph.get('nodes') or {} -%}
    {%- if graph_nodes -%}
        {%- set events_node = featurestore._windowed_model_node(graph_nodes, d.events) -%}
        {%- if events_node.unique_id not in model.depends_on.nodes -%}
            {{ exceptions.raise_compiler_error("model " ~ model.name ~ ": windowed_features reads " ~ d.events
                ~ " (meta.featurestore.windowed.events of " ~ d.name ~ "), which dbt cannot see at parse time: add the line "
                ~ "-- depends_on: {{ ref('" ~ d.events ~ "') }} to the model's SQL") }}
        {%- endif -%}
    {%- endif -%}
    {%- if output == 'history' -%}
        {{ featurestore._windowed_history(d) }}
    {%- else -%}
        {{ featurestore._windowed_tiles(d) }}
    {%- endif -%}
{% endmacro %}


{#- The epoch (1970-01-01 00:00:00 UTC) as a timestamp. -#}
{% macro _windowed_epoch() -%}
    cast('1970-01-01 00:00:00' as timestamp)
{%- endmacro %}


{#- The timestamp `seconds` (an integer expression) after the epoch. -#}
{% macro _windowed_at(seconds) -%}
    {{ dbt.dateadd('second', seconds, featurestore._windowed_epoch()) }}
{%- endmacro %}


{#- The distinct aggregated columns of the declaration, in feature order. -#}
{% macro _windowed_value_columns(d) %}
    {%- set columns = [] -%}
    {%- for f in d.features if f.column and f.column not in columns and f.column not in d['keys'] -%}
        {%- do columns.append(f.column) -%}
    {%- endfor -%}
    {{ return(columns) }}
{% endmacro %}


{#- CTEs __fs_candidates, __fs_events: the deduplicated events (ingested by `known_by`, an
    SQL timestamp, when given) with __fs_te_s (t_e in whole epoch seconds) and per hop H
    __fs_tile_<H> (its tile's start, epoch seconds). -#}
{% macro _windowed_events(d, known_by=none) %}
    {%- set values = featurestore._windowed_value_columns(d) -%}
    {%- set order = d['keys'] + values -%}
__fs_candidates as (
    select
        {% for key in d['keys'] %}{{ key }},
        {% endfor -%}
        {% for column in values %}{{ column }},
        {% endfor -%}
        {{ d.event_id }} as __fs_id,
        {{ d.event_time }} as __fs_event_at,
        {{ d.ingested_at }} as __fs_ingested_at
    from {{ ref(d.events) }}
    where {% for key in d['keys'] %}{{ key }} is not null
        and {% endfor %}{{ d.event_id }} is not null
        and {{ d.event_time }} is not null
        and {{ d.ingested_at }} is not null
        {%- if known_by is not none %}
        and {{ d.ingested_at }} <= {{ known_by }}
        {%- endif %}
),

__fs_first_copies as (
    select * from (
        select
            *,
            row_number() over (
                partition by __fs_id
                order by __fs_ingested_at, __fs_event_at
                    {%- for column in order %}, {{ column }} nulls last{% endfor %}
            ) as __fs_copy_rank
        from __fs_candidates
    ) as ranked
    where __fs_copy_rank = 1
),

__fs_events as (
    select
        timed.*
        {%- for hop in d.hops %},
        timed.__fs_te_s - mod(timed.__fs_te_s, {{ hop }}) as __fs_tile_{{ hop }}
        {%- endfor %}
    from (
        select
            {% for key in d['keys'] %}{{ key }},
            {% endfor -%}
            {% for column in values %}{{ column }},
            {% endfor -%}
            __fs_id,
            __fs_ingested_at,
            {{ dbt.datediff(featurestore._windowed_epoch(),
                            'case when __fs_event_at < __fs_ingested_at then __fs_event_at else __fs_ingested_at end',
                            'second') }} as __fs_te_s
        from __fs_first_copies
    ) as timed
)
{%- endmacro %}


{#- The exact type of a feature's running or tile sum. -#}
{% macro _windowed_sum_type(f) -%}
    {%- if f.kind == 'decimal' -%}decimal(38, {{ f.scale }}){%- else -%}bigint{%- endif -%}
{%- endmacro %}


{#- One feature's delta when an event enters (sign 1) or leaves (sign -1): the count part and,
    for sum and avg, the sum part. -#}
{% macro _windowed_count_delta(f, sign) -%}
    {%- if f.function == 'sum' -%}0
    {%- elif f.column -%}case when {{ f.column }} is not null then {{ sign }} else 0 end
    {%- else -%}{{ sign }}
    {%- endif -%}
{%- endmacro %}

{% macro _windowed_sum_delta(f, sign) -%}
    {%- if f.function == 'count' -%}cast(0 as {{ featurestore._windowed_sum_type(f) }})
    {%- else -%}cast(case when {{ f.column }} is not null then {{ '-' if sign < 0 else '' }}{{ f.column }} else 0 end as {{ featurestore._windowed_sum_type(f) }})
    {%- endif -%}
{%- endmacro %}


{% macro _windowed_history(d) %}
    {%- set keys = d['keys'] -%}
    {%- set values = featurestore._windowed_value_columns(d) -%}
    {%- set key_list = keys | join(', ') -%}
with

{{ featurestore._windowed_events(d) }},

__fs_spanned as (
    select
        *
        {%- for span in d.spans %},
        {{ featurestore._windowed_at('__fs_tile_' ~ span[0] ~ ' + ' ~ (span[0] + span[1])) }} as __fs_leaves_{{ loop.index }}
        {%- endfor %},
        {% if d.spans | length == 1 -%}
        {{ featurestore._windowed_at('__fs_tile_' ~ d.spans[0][0] ~ ' + ' ~ (d.spans[0][0] + d.spans[0][1])) }}
        {%- else -%}
        {{ featurestore._windowed_at('greatest(' ~ featurestore._windowed_leave_seconds(d) ~ ')') }}
        {%- endif %} as __fs_last_leave
    from __fs_events
),

{% if is_incremental() %}
__fs_changed as (
    select {{ key_list }}, min(__fs_ingested_at) as __fs_recompute_from
    from __fs_events
    where __fs_ingested_at > {{ featurestore.ingestion_watermark('last_ingested_at') }}
    group by {{ key_list }}
),

__fs_prior as (
    select {% for key in keys %}stored.{{ key }}, {% endfor %}max(stored.last_ingested_at) as last_ingested_at
    from {{ this }} as stored
    inner join __fs_changed as changed
        on {% for key in keys %}stored.{{ key }} = changed.{{ key }} and {% endfor %}stored.feature_at < changed.__fs_recompute_from
    group by {% for key in keys %}stored.{{ key }}{% if not loop.last %}, {% endif %}{% endfor %}
),
{% endif %}

__fs_window_events as (
    select e.*
    from __fs_spanned as e
    {%- if is_incremental() %}
    inner join __fs_changed as changed
        on {% for key in keys %}e.{{ key }} = changed.{{ key }} and {% endfor %}e.__fs_last_leave >= changed.__fs_recompute_from
    {%- endif %}
    where e.__fs_ingested_at < e.__fs_last_leave
),

__fs_deltas as (
    -- an event enters every window it will count in at its ingestion time
    select
        {{ key_list }},
        __fs_ingested_at as feature_at,
        __fs_ingested_at
        {%- for f in d.features %}
        {%- set leaves = '__fs_leaves_' ~ (d.spans.index([f.hop_seconds, f.window_seconds]) + 1) %},
        case when __fs_ingested_at < {{ leaves }} then {{ featurestore._windowed_count_delta(f, 1) }} else 0 end as __fs_n{{ loop.index }},
        case when __fs_ingested_at < {{ leaves }} then {{ featurestore._windowed_sum_delta(f, 1) }} else {{ featurestore._windowed_sum_delta({'function': 'count', 'kind': f.kind, 'scale': f.scale}, 1) }} end as __fs_s{{ loop.index }}
        {%- endfor %}
    from __fs_window_events
    {%- for span in d.spans %}
    {%- set span_index = loop.index %}

    union all

    -- and leaves the windows of (hop {{ span[0] }} s, window {{ span[1] }} s)
    select
        {{ key_list }},
        __fs_leaves_{{ span_index }} as feature_at,
        cast(null as timestamp) as __fs_ingested_at
        {%- for f in d.features %},
        {% if [f.hop_seconds, f.window_seconds] == span -%}
        {{ featurestore._windowed_count_delta(f, -1) }} as __fs_n{{ loop.index }},
        {{ featurestore._windowed_sum_delta(f, -1) }} as __fs_s{{ loop.index }}
        {%- else -%}
        0 as __fs_n{{ loop.index }},
        {{ featurestore._windowed_sum_delta({'function': 'count', 'kind': f.kind, 'scale': f.scale}, -1) }} as __fs_s{{ loop.index }}
        {%- endif %}
        {%- endfor %}
    from __fs_window_events
    where __fs_ingested_at < __fs_leaves_{{ span_index }}
    {%- endfor %}
),

__fs_change_points as (
    select
        {{ key_list }},
        feature_at,
        max(__fs_ingested_at) as __fs_ingested_at
        {%- for f in d.features %},
        sum(__fs_n{{ loop.index }}) as __fs_n{{ loop.index }},
        sum(__fs_s{{ loop.index }}) as __fs_s{{ loop.index }}
        {%- endfor %}
    from __fs_deltas
    group by {{ key_list }}, feature_at
),

__fs_running as (
    select
        {{ key_list }},
        feature_at,
        max(__fs_ingested_at) over (
            partition by {{ key_list }} order by feature_at rows between unbounded preceding and current row
        ) as last_ingested_at
        {%- for f in d.features %},
        sum(__fs_n{{ loop.index }}) over (
            partition by {{ key_list }} order by feature_at rows between unbounded preceding and current row
        ) as __fs_n{{ loop.index }},
        sum(__fs_s{{ loop.index }}) over (
            partition by {{ key_list }} order by feature_at rows between unbounded preceding and current row
        ) as __fs_s{{ loop.index }}
        {%- endfor %}
    from __fs_change_points
)

select
    {% for key in keys %}running.{{ key }},
    {% endfor -%}
    running.feature_at,
    {% if is_incremental() -%}
    case
        when prior.last_ingested_at > running.last_ingested_at or running.last_ingested_at is null
            then prior.last_ingested_at
        else running.last_ingested_at
    end
    {%- else -%}
    running.last_ingested_at
    {%- endif %} as last_ingested_at
    {%- for f in d.features %},
    {% if f.function == 'count' -%}
    cast(running.__fs_n{{ loop.index }} as bigint)
    {%- elif f.function == 'sum' -%}
    cast(running.__fs_s{{ loop.index }} as {{ 'double' if f.kind == 'decimal' else 'bigint' }})
    {%- else -%}
    case when running.__fs_n{{ loop.index }} > 0
        then cast(running.__fs_s{{ loop.index }} as double) / running.__fs_n{{ loop.index }} end
    {%- endif %} as {{ f.name }}
    {%- endfor %}
from __fs_running as running
{%- if is_incremental() %}
inner join __fs_changed as changed
    on {% for key in keys %}running.{{ key }} = changed.{{ key }} and {% endfor %}running.feature_at >= changed.__fs_recompute_from
left join __fs_prior as prior
    on {% for key in keys %}running.{{ key }} = prior.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}

union all

-- the changed entities' stored rows before R, unchanged (unique_key is the entity: its rows
-- are all replaced, so a stored row at an instant that is no longer one goes away)
select
    {% for key in keys %}stored.{{ key }},
    {% endfor -%}
    stored.feature_at,
    stored.last_ingested_at
    {%- for f in d.features %},
    stored.{{ f.name }}
    {%- endfor %}
from {{ this }} as stored
inner join __fs_changed as changed
    on {% for key in keys %}stored.{{ key }} = changed.{{ key }} and {% endfor %}stored.feature_at < changed.__fs_recompute_from
{%- endif %}
{% endmacro %}


{#- The leave offsets `__fs_tile_<H> + H + W` of every (hop, window) span, comma-separated. -#}
{% macro _windowed_leave_seconds(d) -%}
    {%- for span in d.spans -%}
    __fs_tile_{{ span[0] }} + {{ span[0] + span[1] }}{% if not loop.last %}, {% endif %}
    {%- endfor -%}
{%- endmacro %}


{% macro _windowed_tiles(d) %}
    {%- set keys = d['keys'] -%}
    {%- set key_list = keys | join(', ') -%}
    {%- set requested = featurestore.online_cutoff() -%}
    {%- set cutoff -%}
        {%- if d.streamed %}{{ dbt.date_trunc('hour', requested) }}{% else %}{{ requested }}{% endif -%}
    {%- endset -%}
with

{{ featurestore._windowed_events(d, known_by=cutoff) }},

__fs_tiles as (
    {%- for hop, longest in d.hops.items() %}
    {%- if not loop.first %}

    union all
    {%- endif %}

    -- tiles of hop {{ hop }} s still inside its longest window ({{ longest }} s) at the cutoff
    select
        {{ key_list }},
        cast({{ hop }} as bigint) as tile_hop_seconds,
        {{ featurestore._windowed_at('__fs_tile_' ~ hop) }} as tile_start,
        max(__fs_ingested_at) as __fs_last_ingested_at
        {%- for f in d.features %}
        {%- if f.function != 'sum' %},
        {% if f.hop_seconds == hop -%}
        cast(count({{ f.column if f.column else '*' }}) as bigint)
        {%- else -%}
        cast(null as bigint)
        {%- endif %} as {{ f.name }}__count
        {%- endif %}
        {%- if f.function != 'count' %},
        {% if f.hop_seconds == hop -%}
        cast(coalesce(sum({{ f.column }}), 0) as {{ featurestore._windowed_sum_type(f) }})
        {%- else -%}
        cast(null as {{ featurestore._windowed_sum_type(f) }})
        {%- endif %} as {{ f.name }}__sum
        {%- endif %}
        {%- endfor %}
    from __fs_events
    where {{ featurestore._windowed_at('__fs_tile_' ~ hop ~ ' + ' ~ (hop + longest)) }} > {{ cutoff }}
    group by {{ key_list }}, __fs_tile_{{ hop }}
    {%- endfor %}
)

select
    {% for key in keys %}{{ key }},
    {% endfor -%}
    max(__fs_last_ingested_at) over (partition by {{ key_list }}) as {{ d.name }}__feature_at,
    {{ cutoff }} as {{ d.name }}__as_of_at,
    max(__fs_last_ingested_at) over (partition by {{ key_list }}) as {{ d.name }}__changed_at,
    {{ cutoff }} as as_of_at,
    tile_hop_seconds,
    tile_start
    {%- for f in d.features %}
    {%- if f.function != 'sum' %},
    {{ f.name }}__count
    {%- endif %}
    {%- if f.function != 'count' %},
    {{ f.name }}__sum
    {%- endif %}
    {%- endfor %}
from __fs_tiles
{% endmacro %}
