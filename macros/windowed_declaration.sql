{#-
    The declaration of a windowed feature view, read for featurestore.windowed_features:
    featurestore.windowed_declaration(view=none) ->
      {name, keys, events, event_time, ingested_at, event_id, spans, hops, features, streamed}
    where each feature is {name, function, column, window_seconds, hop_seconds, kind, scale}
    (kind: 'int' or 'decimal' for the column of a sum or avg, else none; scale: the decimal
    column's scale), `hops` the distinct hops with the longest window of each
    ({hop_seconds: longest window_seconds}) and `spans` the distinct (hop, window) pairs.

    Sources: the view's model node in `graph` (the current model when `view` is none):
    `meta.featurestore` (`keys`, `windowed: {events, event_time, ingested_at, event_id}`),
    its columns' `meta.featurestore.aggregation` (`{function, column, window, hop}`), and the
    event model's column `data_type`s (the type of a summed or averaged column). dbt unit
    tests have no `graph`: there the same facts come from the var
    featurestore_unit_test_windowed, {view: {keys, windowed, aggregations: {feature:
    aggregation}, event_column_types: {column: data_type}}}.

    Errors name the model and the field (missing windowed fields, an unknown function, a
    window that is not a whole number of hops, a sum or avg of a column that is not an
    integer or a decimal); featurestore/registry.py does the full validation.
-#}
{% macro windowed_declaration(view=none) %}
    {#- in a unit test, `model` is the test's node: the tested model is tested_node_unique_id -#}
    {%- set tested = model.get('tested_node_unique_id') if model is mapping else none -%}
    {%- set name = view if view is not none else (tested.split('.')[2] if tested else model.name) -%}
    {%- set graph_nodes = graph.get('nodes') or {} -%}
    {%- set unit_test = var('featurestore_unit_test_windowed', {}).get(name) -%}
    {%- set aggregations = {} -%}
    {%- set event_types = {} -%}
    {%- if not graph_nodes and unit_test -%}
        {%- set meta = {'keys': unit_test['keys'], 'windowed': unit_test['windowed']} -%}
        {%- do aggregations.update(unit_test.get('aggregations', {})) -%}
        {%- do event_types.update(unit_test.get('event_column_types', {})) -%}
    {%- else -%}
        {%- set node = featurestore._windowed_model_node(graph_nodes, name) -%}
        {%- set meta = node.config.meta.get('featurestore') or {} -%}
        {%- for column in node.columns.values() -%}
            {%- set aggregation = (column.meta.get('featurestore') or {}).get('aggregation') -%}
            {%- if aggregation -%}{%- do aggregations.update({column.name: aggregation}) -%}{%- endif -%}
        {%- endfor -%}
        {%- set windowed = meta.get('windowed') or {} -%}
        {%- if windowed.get('events') -%}
            {%- set events_node = featurestore._windowed_model_node(graph_nodes, windowed['events'], name ~ ": meta.featurestore.windowed.events") -%}
            {%- for column in events_node.columns.values() if column.data_type -%}
                {%- do event_types.update({column.name: column.data_type}) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
    {%- set windowed = meta.get('windowed') -%}
    {%- if not windowed -%}
        {{ exceptions.raise_compiler_error("model " ~ name ~ ": meta.featurestore.windowed is missing (windowed_features needs a declared view)") }}
    {%- endif -%}
    {%- for field in ['events', 'event_time', 'ingested_at', 'event_id'] if not windowed.get(field) -%}
        {{ exceptions.raise_compiler_error("model " ~ name ~ ": meta.featurestore.windowed." ~ field ~ " is missing") }}
    {%- endfor -%}
    {%- if not meta.get('keys') -%}
        {{ exceptions.raise_compiler_error("model " ~ name ~ ": meta.featurestore.keys is missing") }}
    {%- endif -%}
    {%- if not aggregations -%}
        {{ exceptions.raise_compiler_error("model " ~ name ~ ": no column declares meta.featurestore.aggregation") }}
    {%- endif -%}
    {%- set features = [] -%}
    {%- set hops = {} -%}
    {%- set spans = [] -%}
    {%- for feature, aggregation in aggregations.items() -%}
        {%- set where = "model " ~ name ~ ", column " ~ feature ~ ": meta.featurestore.aggregation" -%}
        {%- set function = aggregation.get('function') -%}
        {%- if function not in ['count', 'sum', 'avg'] -%}
            {{ exceptions.raise_compiler_error(where ~ ".function = '" ~ function ~ "' is not one of count, sum, avg") }}
        {%- endif -%}
        {%- set column = aggregation.get('column') -%}
        {%- if function != 'count' and not column -%}
            {{ exceptions.raise_compiler_error(where ~ ".column is missing (" ~ function ~ " needs a column)") }}
        {%- endif -%}
        {%- if not aggregation.get('window') -%}
            {{ exceptions.raise_compiler_error(where ~ ".window is missing") }}
        {%- endif -%}
        {%- set window_seconds = featurestore.parse_duration(aggregation['window'], name, 'aggregation.window of ' ~ feature) -%}
        {%- if aggregation.get('hop') -%}
            {%- set hop_seconds = featurestore.parse_duration(aggregation['hop'], name, 'aggregation.hop of ' ~ feature) -%}
        {%- else -%}
            {%- set hop_seconds = 60 if window_seconds <= 3600 else (3600 if window_seconds <= 864000 else 86400) -%}
        {%- endif -%}
        {%- if hop_seconds > window_seconds or window_seconds % hop_seconds != 0 -%}
            {{ exceptions.raise_compiler_error(where ~ ": window " ~ aggregation['window'] ~ " is not a whole number of hops of " ~ hop_seconds ~ " s") }}
        {%- endif -%}
        {%- set kind = none -%}
        {%- set scale = 0 -%}
        {%- if function != 'count' -%}
            {%- set type_info = featurestore._windowed_column_kind(event_types.get(column), where ~ ".column (" ~ column ~ " of " ~ windowed['events'] ~ ")") -%}
            {%- set kind = type_info[0] -%}
            {%- set scale = type_info[1] -%}
        {%- endif -%}
        {%- do features.append({'name': feature, 'function': function, 'column': column,
                                'window_seconds': window_seconds, 'hop_seconds': hop_seconds,
                                'kind': kind, 'scale': scale}) -%}
        {%- if hops.get(hop_seconds, 0) < window_seconds -%}{%- do hops.update({hop_seconds: window_seconds}) -%}{%- endif -%}
        {%- if [hop_seconds, window_seconds] not in spans -%}{%- do spans.append([hop_seconds, window_seconds]) -%}{%- endif -%}
    {%- endfor -%}
    {{ return({'name': name, 'keys': meta['keys'], 'events': windowed['events'],
               'event_time': windowed['event_time'], 'ingested_at': windowed['ingested_at'],
               'event_id': windowed['event_id'], 'features': features, 'hops': hops,
               'spans': spans, 'streamed': windowed.get('streamed') is sameas true}) }}
{% endmacro %}


{#- The one model node named `name` in the graph, or a compile error naming `what`. -#}
{% macro _windowed_model_node(graph_nodes, name, what=none) %}
    {%- set nodes = graph_nodes.values() | selectattr('resource_type', 'equalto', 'model')
                    | selectattr('name', 'equalto', name) | list -%}
    {%- if nodes | length != 1 -%}
        {{ exceptions.raise_compiler_error((what ~ ": " if what else "windowed_features: ") ~ "no model named " ~ name
            ~ ("" if graph_nodes else " (no dbt graph here: in a unit test, set var featurestore_unit_test_windowed)")) }}
    {%- endif -%}
    {{ return(nodes[0]) }}
{% endmacro %}


{#- ('int', 0) or ('decimal', scale) for a declared column data_type; an error naming `where`
    for anything else (double columns are refused: the paths would differ in the last bits). -#}
{% macro _windowed_column_kind(data_type, where) %}
    {%- if not data_type -%}
        {{ exceptions.raise_compiler_error(where ~ " has no declared data_type (sum and avg need an integer or decimal column)") }}
    {%- endif -%}
    {%- set text = (data_type | lower | replace(' ', '')) -%}
    {%- if text in ['tinyint', 'smallint', 'int', 'integer', 'bigint', 'hugeint', 'int2', 'int4', 'int8'] -%}
        {{ return(['int', 0]) }}
    {%- endif -%}
    {%- for prefix in ['decimal(', 'numeric(', 'number('] if text.startswith(prefix) and text.endswith(')') -%}
        {%- set parts = text[(prefix | length):-1].split(',') -%}
        {%- set scale = (parts[1] | int) if parts | length == 2 else 0 -%}
        {{ return(['int', 0] if scale == 0 else ['decimal', scale]) }}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error(where ~ " has data_type " ~ data_type ~ ": sum and avg need an integer or decimal column") }}
{% endmacro %}
