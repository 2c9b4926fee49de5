{#- The current time as a timestamp without time zone, in UTC. -#}
{% macro utc_now() %}
    {{ return(adapter.dispatch('utc_now', 'featurestore')()) }}
{% endmacro %}

{% macro default__utc_now() %}
    cast({{ dbt.current_timestamp() }} as timestamp)
{% endmacro %}

{#- https://duckdb.org/docs/stable/sql/functions/timestamptz#at-time-zone -#}
{% macro duckdb__utc_now() %}
    (now() at time zone 'UTC')
{% endmacro %}

{#- https://docs.snowflake.com/en/sql-reference/functions/convert_timezone -#}
{% macro snowflake__utc_now() %}
    cast(convert_timezone('UTC', current_timestamp()) as timestamp_ntz)
{% endmacro %}
