{#-
    The text of one member of a JSON object column (a key of the served-vector log's `keys`):
    json_text('keys', 'user_id') -> the string value, or null when the member is missing.
-#}
{% macro json_text(column, member) %}
    {{ return(adapter.dispatch('json_text', 'featurestore')(column, member)) }}
{% endmacro %}

{#- SQL:2016 JSON_VALUE (PostgreSQL 17, MySQL, BigQuery, ...). -#}
{% macro default__json_text(column, member) %}
    json_value({{ column }}, '$."{{ member }}"')
{% endmacro %}

{#- https://duckdb.org/docs/stable/data/json/json_functions#json-extraction-functions -#}
{% macro duckdb__json_text(column, member) %}
    json_extract_string({{ column }}, '$."{{ member }}"')
{% endmacro %}

{#- https://docs.snowflake.com/en/sql-reference/functions/get -#}
{% macro snowflake__json_text(column, member) %}
    cast(get({{ column }}, '{{ member }}') as varchar)
{% endmacro %}
