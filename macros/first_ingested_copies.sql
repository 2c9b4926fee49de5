{#-
    One row per `unique_key` from `relation`: the copy ingested first wins (exact duplicates
    and redeliveries collapse; copies ingested at the same instant resolve by `tie_breakers`,
    in order, nulls last). Rows with a null in any of `required` are dropped.

    Incremental (inside a model materialized incremental with unique_key = `unique_key`):
    only rows ingested after {{ featurestore.ingestion_watermark('ingested_at') }} are read,
    and the stored copy of each key seen again competes with them, so a copy ingested earlier
    that lands in the warehouse later (within the lookback) still wins, exactly as in a full
    refresh.

    Arguments
      relation      the source relation (a ref)
      unique_key    the id column
      columns       every column to return, in order (the id and `ingested_at` included)
      required      columns that must not be null (the id and `ingested_at` included)
      tie_breakers  columns ordering copies with the same `ingested_at`
-#}
{% macro first_ingested_copies(relation, unique_key, columns, required, tie_breakers) %}
    {{ return(adapter.dispatch('first_ingested_copies', 'featurestore')(
        relation, unique_key, columns, required, tie_breakers)) }}
{% endmacro %}

{#- Standard SQL (row_number() over a window), the same on DuckDB and Snowflake. -#}
{% macro default__first_ingested_copies(relation, unique_key, columns, required, tie_breakers) %}
with candidates as (
    select
        {{ columns | join(',\n        ') }}
    from {{ relation }}
    where {{ required | join(' is not null\n        and ') }} is not null
    {% if is_incremental() %}
        and ingested_at > {{ featurestore.ingestion_watermark('ingested_at') }}
    {% endif %}
),

competing as (
    select * from candidates
    {% if is_incremental() %}
    union all
    select
        stored.{{ columns | join(',\n        stored.') }}
    from {{ this }} as stored
    where stored.{{ unique_key }} in (select {{ unique_key }} from candidates)
    {% endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by {{ unique_key }}
            order by ingested_at
            {%- for column in tie_breakers %}, {{ column }} nulls last{% endfor %}
        ) as copy_rank
    from competing
)

select
    {{ columns | join(',\n    ') }}
from ranked
where copy_rank = 1
{% endmacro %}
