{#-
    Every online feature view of the registry (the models whose meta.featurestore says
    online: true), read from the dbt graph at compile time, sorted by name:
      [{name, entity, keys: [{name, data_type}], features: [{name, data_type, value_type,
        skew_threshold}]}]
    value_type is the registry's (featurestore/data_types.py: int, float, bool, string,
    timestamp); skew_threshold the feature column's meta.featurestore.skew_threshold, a
    number from 0 to 1 (default 0): the highest mismatch rate the skew report accepts
    (README "Training-serving skew"). featurestore/registry.py validates the same fields
    on load; tests/dbt/test_skew.py checks both read the same values.
-#}
{% macro online_feature_views() %}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set type_names = {
        'bigint': 'int', 'int': 'int', 'integer': 'int', 'int64': 'int', 'smallint': 'int',
        'tinyint': 'int', 'hugeint': 'int', 'number': 'int',
        'double': 'float', 'float': 'float', 'float8': 'float', 'float64': 'float',
        'real': 'float', 'double precision': 'float',
        'boolean': 'bool', 'bool': 'bool',
        'varchar': 'string', 'string': 'string', 'text': 'string',
        'timestamp': 'timestamp', 'timestamp_ntz': 'timestamp', 'datetime': 'timestamp',
    } -%}
    {%- set views = [] -%}
    {%- set nodes = graph.get('nodes', {}).values() | selectattr('resource_type', 'equalto', 'model')
                    | sort(attribute='name') -%}
    {%- for node in nodes -%}
        {%- set meta = node.config.meta.get('featurestore') -%}
        {%- if meta is mapping and meta.get('online') is sameas true -%}
            {%- set keys = [] -%}
            {%- for key in meta['keys'] -%}
                {%- do keys.append({'name': key, 'data_type': node.columns[key].data_type}) -%}
            {%- endfor -%}
            {%- set features = [] -%}
            {%- for column in node.columns.values() -%}
                {%- set column_meta = column.meta.get('featurestore', {}) -%}
                {%- if column_meta is mapping and column_meta.get('feature') -%}
                    {%- set base = (column.data_type or '') | lower | trim -%}
                    {%- set base = base.split('(')[0] | trim -%}
                    {%- set threshold = column_meta.get('skew_threshold', 0) -%}
                    {%- if threshold is boolean or threshold is not number or threshold < 0 or threshold > 1 -%}
                        {{ exceptions.raise_compiler_error("model " ~ node.name ~ ": column " ~ column.name
                            ~ ": meta.featurestore.skew_threshold must be a number from 0 to 1, got " ~ threshold) }}
                    {%- endif -%}
                    {%- do features.append({
                        'name': column.name,
                        'data_type': column.data_type,
                        'value_type': type_names.get(base),
                        'skew_threshold': threshold,
                    }) -%}
                {%- endif -%}
            {%- endfor -%}
            {%- do views.append({'name': node.name, 'entity': meta['entity'], 'keys': keys,
                                 'features': features}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(views) }}
{% endmacro %}
