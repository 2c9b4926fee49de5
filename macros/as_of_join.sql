{#-
    Point-in-time ("as-of") join of a spine to any number of feature views.

    Arguments
      spine            relation or CTE name holding the spine rows
      spine_timestamp  spine column with the point in time of each row (timestamp, UTC)
      feature_views    list of dicts, one per view (build them with featurestore.feature_view()):
                         name         view name; prefixes the audit columns
                         relation     the view's relation (or a CTE name)
                         join_keys    {spine column: view key column}
                         timestamp    the view's feature timestamp column
                         available_at the view's availability column, or none
                         ttl_seconds  maximum age of a value, or none (never expires)
                         features     feature columns to bring back (named as in the view)
                         tie_breakers all feature columns of the view in declared order
                                      (optional; default: features)
      include_timestamps  also return <name>__feature_at and <name>__as_of_at per view
      spine_columns    the spine's columns, required by the portable default__ only

    Semantics (identical on every adapter)
      * The as-of key of a view row is its feature timestamp or, if the view declares an
        availability column, the later of the two (a null availability counts as the feature
        timestamp). A row matches a spine row when the keys are equal and as-of key <= spine
        timestamp; the match is the row with the greatest as-of key.
      * Ties: view rows sharing (keys, as-of key) are reduced to one first: the greatest
        feature timestamp wins, then the greatest values of tie_breakers (all the view's
        features in declared order, nulls last), so the winner does not depend on which
        features a request asks for. Ties never duplicate output rows.
      * TTL: a matched value whose feature timestamp is older than spine timestamp - ttl is
        null (age == ttl is still served). No match gives null.
      * Every spine row comes back exactly once (duplicates included) with its own columns
        unchanged, followed by the feature columns. Spine rows with a null timestamp or null
        keys get nulls.
-#}
{% macro as_of_join(spine, spine_timestamp, feature_views, include_timestamps=false, spine_columns=none) %}
    {{ return(adapter.dispatch('as_of_join', 'featurestore')(
        spine, spine_timestamp, feature_views, include_timestamps, spine_columns)) }}
{% endmacro %}


{#- One view's rows reduced to one per (keys, as-of key), with normalized column names. -#}
{% macro _as_of_view_rows(fv) %}
    {%- set asof -%}
        {%- if fv.available_at -%}
            case when {{ fv.available_at }} > {{ fv.timestamp }} then {{ fv.available_at }} else {{ fv.timestamp }} end
        {%- else -%}
            {{ fv.timestamp }}
        {%- endif -%}
    {%- endset -%}
    {%- set keys = fv.join_keys.values() | list -%}
    {%- set tie_breakers = fv.get('tie_breakers') or fv.features -%}
    select {% for key in keys %}__fs_k{{ loop.index }}, {% endfor %}__fs_ts, __fs_asof
        {%- for feature in fv.features %}, {{ feature }}{% endfor %}
    from (
        select
            {% for key in keys %}{{ key }} as __fs_k{{ loop.index }},
            {% endfor -%}
            {{ fv.timestamp }} as __fs_ts,
            {{ asof }} as __fs_asof,
            {% for feature in fv.features %}{{ feature }},
            {% endfor -%}
            row_number() over (
                partition by {% for key in keys %}{{ key }}, {% endfor %}{{ asof }}
                order by {{ fv.timestamp }} desc
                    {%- for column in tie_breakers %}, {{ column }} desc nulls last{% endfor %}
            ) as __fs_tie_rank
        from {{ fv.relation }}
        where {{ fv.timestamp }} is not null
    ) as ranked
    where __fs_tie_rank = 1
{% endmacro %}


{#- The output columns for one view joined as `alias`: TTL applied, optional audit columns. -#}
{% macro _as_of_output_columns(fv, alias, spine_ts, include_timestamps) %}
    {%- set fresh -%}
        {%- if fv.ttl_seconds is not none -%}
            {{ alias }}.__fs_ts >= {{ dbt.dateadd('second', -1 * (fv.ttl_seconds | int), spine_ts) }}
        {%- else -%}
            {{ alias }}.__fs_ts is not null
        {%- endif -%}
    {%- endset -%}
    {%- for feature in fv.features %},
        case when {{ fresh }} then {{ alias }}.{{ feature }} end as {{ feature }}
    {%- endfor %}
    {%- if include_timestamps %},
        case when {{ fresh }} then {{ alias }}.__fs_ts end as {{ fv.name }}__feature_at,
        case when {{ fresh }} then {{ alias }}.__fs_asof end as {{ fv.name }}__as_of_at
    {%- endif %}
{% endmacro %}


{#- The final select of the row-numbered forms: the numbered spine (`__fs_spine`, columns
    `spine_select`) left-joined to each view's match CTE `__fs_match<n>` by row number. -#}
{% macro _as_of_stitch(spine_select, spine_timestamp, feature_views, include_timestamps) %}
    select
        {{ spine_select }}
        {%- for fv in feature_views %}
        {{- featurestore._as_of_output_columns(fv, '__fs_m' ~ loop.index, 'spine.' ~ spine_timestamp, include_timestamps) }}
        {%- endfor %}
    from __fs_spine as spine
    {%- for fv in feature_views %}
    left join __fs_match{{ loop.index }} as __fs_m{{ loop.index }}
        on __fs_m{{ loop.index }}.__fs_row = spine.__fs_row
    {%- endfor %}
{% endmacro %}


{#- Portable form: a left join on keys and as-of key <= spine time, ranked per spine row. -#}
{% macro default__as_of_join(spine, spine_timestamp, feature_views, include_timestamps, spine_columns) %}
    {%- if spine_columns is none -%}
        {{ exceptions.raise_compiler_error("as_of_join on adapter " ~ adapter.type() ~ " needs spine_columns") }}
    {%- endif -%}
    with __fs_spine as (
        select *, row_number() over (order by {{ spine_timestamp }}) as __fs_row
        from {{ spine }}
    )
    {%- for fv in feature_views %}
    , __fs_fv{{ loop.index }} as (
        {{ featurestore._as_of_view_rows(fv) }}
    )
    , __fs_match{{ loop.index }} as (
        select * from (
            select
                s.__fs_row, v.*,
                row_number() over (partition by s.__fs_row order by v.__fs_asof desc) as __fs_pick
            from __fs_spine as s
            inner join __fs_fv{{ loop.index }} as v
                on {% for spine_key in fv.join_keys %}s.{{ spine_key }} = v.__fs_k{{ loop.index }} and {% endfor %}v.__fs_asof <= s.{{ spine_timestamp }}
        ) as ranked
        where __fs_pick = 1
    )
    {%- endfor %}
    {%- set spine_select -%}
        {% for column in spine_columns %}spine.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    {%- endset %}
    {{ featurestore._as_of_stitch(spine_select, spine_timestamp, feature_views, include_timestamps) }}
{% endmacro %}


{#- DuckDB: ASOF LEFT JOIN keeps unmatched spine rows.
    https://duckdb.org/docs/stable/sql/query_syntax/from#as-of-joins
    Same semantics as _as_of_view_rows, with less work before the join (measured in
    bench/README.md: -38% CPU at 1,000,000 spine rows x 5,000,000 view rows):
      * only view rows whose keys occur in the spine are read (no other row can match; null
        keys cannot match either), and the rows CTE is not materialized (DuckDB scans the
        view instead of holding a copy);
      * only rows of (keys, as-of key) groups with more than one row go through the tie
        window (same order as _as_of_view_rows, so the same winner); all others pass. -#}
{% macro duckdb__as_of_join(spine, spine_timestamp, feature_views, include_timestamps, spine_columns) %}
    with
    {%- for fv in feature_views %}
    {%- set n = loop.index %}
    {%- set keys = fv.join_keys.values() | list %}
    {%- set tie_breakers = fv.get('tie_breakers') or fv.features %}
    {%- set carried = (fv.features + tie_breakers) | unique | list %}
    {%- set group -%}
        {% for key in keys %}__fs_k{{ loop.index }}, {% endfor %}__fs_asof
    {%- endset %}
    {%- set same_group -%}
        {% for key in keys %}t.__fs_k{{ loop.index }} = r.__fs_k{{ loop.index }} and {% endfor %}t.__fs_asof = r.__fs_asof
    {%- endset %}
    {%- set columns -%}
        {% for key in keys %}__fs_k{{ loop.index }}, {% endfor %}__fs_ts, __fs_asof{% for feature in fv.features %}, {{ feature }}{% endfor %}
    {%- endset %}
    __fs_rows{{ n }} as not materialized (
        select
            {% for key in keys %}r.{{ key }} as __fs_k{{ loop.index }},
            {% endfor -%}
            r.{{ fv.timestamp }} as __fs_ts,
            {% if fv.available_at -%}
            case when r.{{ fv.available_at }} > r.{{ fv.timestamp }} then r.{{ fv.available_at }} else r.{{ fv.timestamp }} end as __fs_asof
            {%- else -%}
            r.{{ fv.timestamp }} as __fs_asof
            {%- endif %}
            {%- for column in carried %},
            r.{{ column }}
            {%- endfor %}
        from {{ fv.relation }} as r
        where r.{{ fv.timestamp }} is not null
            and exists (
                select 1 from {{ spine }} as s
                where {% for spine_key, view_key in fv.join_keys.items() %}s.{{ spine_key }} = r.{{ view_key }}{% if not loop.last %} and {% endif %}{% endfor %}
            )
    ),
    __fs_tied{{ n }} as (
        select {{ group }} from __fs_rows{{ n }} group by {{ group }} having count(*) > 1
    ),
    __fs_fv{{ n }} as (
        select {{ columns }} from __fs_rows{{ n }} as r
        where not exists (select 1 from __fs_tied{{ n }} as t where {{ same_group }})
        union all
        select {{ columns }} from (
            select r.*, row_number() over (
                partition by {% for key in keys %}r.__fs_k{{ loop.index }}, {% endfor %}r.__fs_asof
                order by r.__fs_ts desc
                    {%- for column in tie_breakers %}, r.{{ column }} desc nulls last{% endfor %}
            ) as __fs_tie_rank
            from __fs_rows{{ n }} as r
            inner join __fs_tied{{ n }} as t on {{ same_group }}
        ) as ranked
        where __fs_tie_rank = 1
    ){% if not loop.last %},{% endif %}
    {%- endfor %}
    select
        spine.*
        {%- for fv in feature_views %}
        {{- featurestore._as_of_output_columns(fv, '__fs_fv' ~ loop.index, 'spine.' ~ spine_timestamp, include_timestamps) }}
        {%- endfor %}
    from {{ spine }} as spine
    {%- for fv in feature_views %}
    {%- set alias = '__fs_fv' ~ loop.index %}
    asof left join {{ alias }}
        on {% for spine_key in fv.join_keys %}spine.{{ spine_key }} = {{ alias }}.__fs_k{{ loop.index }} and {% endfor %}spine.{{ spine_timestamp }} >= {{ alias }}.__fs_asof
    {%- endfor %}
{% endmacro %}


{#- Snowflake: ASOF JOIN ... MATCH_CONDITION keeps unmatched left rows (null-padded).
    https://docs.snowflake.com/en/sql-reference/constructs/asof-join
    Each view gets its own ASOF JOIN against the numbered spine (no chained ASOF JOINs, whose
    support the documentation does not state); the matches are stitched back by row number. -#}
{% macro snowflake__as_of_join(spine, spine_timestamp, feature_views, include_timestamps, spine_columns) %}
    with __fs_spine as (
        select *, row_number() over (order by {{ spine_timestamp }}) as __fs_row
        from {{ spine }}
    )
    {%- for fv in feature_views %}
    {%- set alias = '__fs_fv' ~ loop.index %}
    , {{ alias }} as (
        {{ featurestore._as_of_view_rows(fv) }}
    )
    , __fs_match{{ loop.index }} as (
        select spine.__fs_row, {{ alias }}.*
        from __fs_spine as spine
        asof join {{ alias }}
            match_condition (spine.{{ spine_timestamp }} >= {{ alias }}.__fs_asof)
            on {% for spine_key in fv.join_keys %}spine.{{ spine_key }} = {{ alias }}.__fs_k{{ loop.index }}{% if not loop.last %} and {% endif %}{% endfor %}
    )
    {%- endfor %}
    {{ featurestore._as_of_stitch('spine.* exclude (__fs_row)', spine_timestamp, feature_views, include_timestamps) }}
{% endmacro %}
