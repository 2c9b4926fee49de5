{#-
    A served value (a JSON value of the served-vector log's `value` column) as the SQL value
    of a feature of registry type `value_type`:
      int        a JSON integer -> bigint
      float      any JSON number -> double
      bool       a JSON true/false -> boolean
      string     a JSON string -> varchar
      timestamp  a JSON string holding ISO 8601 (the sidecar's `...Z`) -> timestamp, UTC
    Null when the JSON value is null or of another JSON type (a string "3" for an int
    feature, 0.5 for an int feature): the skew comparison counts such a served value as a
    mismatch, never as a match.
-#}
{% macro served_value(column, value_type) %}
    {{ return(adapter.dispatch('served_value', 'featurestore')(column, value_type)) }}
{% endmacro %}

{#- SQL:2016 JSON_VALUE; no JSON type check. -#}
{% macro default__served_value(column, value_type) %}
    {%- set sql_types = {'int': 'bigint', 'float': 'double precision', 'bool': 'boolean',
                         'string': 'varchar', 'timestamp': 'timestamp'} -%}
    cast(json_value({{ column }}, '$') as {{ sql_types[value_type] }})
{% endmacro %}

{#- https://duckdb.org/docs/stable/data/json/json_functions (json_type, json_extract_string);
    https://duckdb.org/docs/stable/sql/functions/timestamptz#timezonetext-timestamptz -#}
{% macro duckdb__served_value(column, value_type) %}
    {%- set text -%}json_extract_string({{ column }}, '$'){%- endset -%}
    {%- if value_type == 'int' -%}
        case when json_type({{ column }}) in ('BIGINT', 'UBIGINT') then try_cast({{ text }} as bigint) end
    {%- elif value_type == 'float' -%}
        case when json_type({{ column }}) in ('BIGINT', 'UBIGINT', 'DOUBLE') then try_cast({{ text }} as double) end
    {%- elif value_type == 'bool' -%}
        case when json_type({{ column }}) = 'BOOLEAN' then try_cast({{ text }} as boolean) end
    {%- elif value_type == 'string' -%}
        case when json_type({{ column }}) = 'VARCHAR' then {{ text }} end
    {%- elif value_type == 'timestamp' -%}
        case when json_type({{ column }}) = 'VARCHAR' then timezone('UTC', try_cast({{ text }} as timestamptz)) end
    {%- else -%}
        {{ exceptions.raise_compiler_error("served_value: unsupported value type " ~ value_type) }}
    {%- endif -%}
{% endmacro %}

{#- https://docs.snowflake.com/en/sql-reference/functions/typeof (a VARIANT's type);
    https://docs.snowflake.com/en/sql-reference/functions/try_to_timestamp -#}
{% macro snowflake__served_value(column, value_type) %}
    {%- if value_type == 'int' -%}
        case when typeof({{ column }}) = 'INTEGER' then cast({{ column }} as bigint) end
    {%- elif value_type == 'float' -%}
        case when typeof({{ column }}) in ('INTEGER', 'DECIMAL', 'DOUBLE') then cast({{ column }} as double) end
    {%- elif value_type == 'bool' -%}
        case when typeof({{ column }}) = 'BOOLEAN' then cast({{ column }} as boolean) end
    {%- elif value_type == 'string' -%}
        case when typeof({{ column }}) = 'VARCHAR' then cast({{ column }} as varchar) end
    {%- elif value_type == 'timestamp' -%}
        case when typeof({{ column }}) = 'VARCHAR'
            then cast(convert_timezone('UTC', try_to_timestamp_tz(cast({{ column }} as varchar))) as timestamp_ntz) end
    {%- else -%}
        {{ exceptions.raise_compiler_error("served_value: unsupported value type " ~ value_type) }}
    {%- endif -%}
{% endmacro %}
