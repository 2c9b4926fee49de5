{#-
    The as_of_join description of a feature view, read from its yml meta (the registry):
    featurestore.feature_view('user_transaction_features') ->
      {name, relation, join_keys, timestamp, available_at, ttl_seconds, freshness_sla_seconds,
       features}.
    `features` narrows the feature columns (default: all columns whose meta marks them as a
    feature); `join_keys` maps spine columns to the view's key columns (default: same names).

    dbt unit tests compile against a manifest without `graph` (dbt 1.11 gives them an empty
    one), so there the view's meta comes from the var featurestore_unit_test_views, set in the
    unit test's `overrides: vars:` as {model: {keys, timestamp, available_at, ttl, features}}
    (tests/core/test_historical.py checks it against the registry).
-#}
{% macro feature_view(model_name, features=none, join_keys=none) %}
    {%- set relation = ref(model_name) -%}
    {%- if not execute -%}
        {{ return({'name': model_name, 'relation': relation, 'join_keys': {}, 'timestamp': 'feature_at',
                   'available_at': none, 'ttl_seconds': none, 'freshness_sla_seconds': none,
                   'features': [], 'tie_breakers': []}) }}
    {%- endif -%}
    {%- set graph_nodes = graph.get('nodes') or {} -%}
    {%- set unit_test_meta = var('featurestore_unit_test_views', {}).get(model_name) -%}
    {%- set all_features = [] -%}
    {%- if not graph_nodes and unit_test_meta -%}
        {%- set meta = unit_test_meta -%}
        {%- do all_features.extend(meta['features']) -%}
    {%- else -%}
        {%- set nodes = graph_nodes.values() | selectattr('resource_type', 'equalto', 'model')
                        | selectattr('name', 'equalto', model_name) | list -%}
        {%- if nodes | length != 1 -%}
            {{ exceptions.raise_compiler_error("feature_view: no model named " ~ model_name
                ~ ("" if graph_nodes else " (no dbt graph here: in a unit test, set var featurestore_unit_test_views)")) }}
        {%- endif -%}
        {%- set node = nodes[0] -%}
        {%- set meta = node.config.meta.get('featurestore') -%}
        {%- if not meta -%}
            {{ exceptions.raise_compiler_error("feature_view: model " ~ model_name ~ " has no meta.featurestore block") }}
        {%- endif -%}
        {%- for column in node.columns.values() -%}
            {%- if column.meta.get('featurestore', {}).get('feature') -%}
                {%- do all_features.append(column.name) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set chosen = all_features if features is none else features -%}
    {%- for feature in chosen if feature not in all_features -%}
        {{ exceptions.raise_compiler_error("feature_view: " ~ feature ~ " is not a feature of " ~ model_name) }}
    {%- endfor -%}
    {%- set keys = {} -%}
    {%- if join_keys is none -%}
        {%- for key in meta['keys'] -%}{%- do keys.update({key: key}) -%}{%- endfor -%}
    {%- else -%}
        {%- do keys.update(join_keys) -%}
    {%- endif -%}
    {{ return({
        'name': model_name,
        'relation': relation,
        'join_keys': keys,
        'timestamp': meta['timestamp'],
        'available_at': meta.get('available_at'),
        'ttl_seconds': featurestore.parse_duration(meta['ttl'], model_name, 'ttl') if meta.get('ttl') else none,
        'freshness_sla_seconds': featurestore.parse_duration(meta['freshness_sla'], model_name, 'freshness_sla') if meta.get('freshness_sla') else none,
        'features': chosen,
        'tie_breakers': all_features,
    }) }}
{% endmacro %}
