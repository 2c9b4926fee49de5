{#-
    The lower bound of `ingested_at` for rows an incremental model still has to (re)process:
    the latest value of `column` already stored in {{ this }}, minus the
    `ingestion_lookback_hours` var. On an empty table it is 1900-01-01 (process everything).
-#}
{% macro ingestion_watermark(column) %}
    {{ return(adapter.dispatch('ingestion_watermark', 'featurestore')(column)) }}
{% endmacro %}

{% macro default__ingestion_watermark(column) %}
    {%- set latest -%}
        (select coalesce(max({{ column }}), cast('1900-01-01 00:00:00' as timestamp)) from {{ this }})
    {%- endset -%}
    {{ dbt.dateadd('hour', -1 * (var('ingestion_lookback_hours') | int), latest) }}
{% endmacro %}
