{#-
    Parse a registry duration (TTL, freshness SLA) such as '90d', '36h', '15m', '30s', '2w'
    into whole seconds: a positive whole number of s, m, h, d or w, what the registry accepts
    of the project's one duration grammar (featurestore/durations.py, which documents it);
    tests/core/test_durations.py checks that the two agree.
-#}
{% macro parse_duration(text, model_name='?', field='ttl') %}
    {%- set units = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800} -%}
    {%- set raw = (text | string) | trim | lower -%}
    {%- set number = raw[:-1] -%}
    {%- set unit = raw[-1:] -%}
    {#- ASCII digits only, as in Python's [0-9]+ (str.isdigit() also accepts other scripts). -#}
    {%- if unit not in units or not number or number.strip('0123456789') or (number | int) <= 0 -%}
        {{ exceptions.raise_compiler_error(
            "model " ~ model_name ~ ": meta.featurestore." ~ field ~ " = '" ~ text
            ~ "' is not a duration (a positive integer followed by s, m, h, d or w, e.g. '90d')") }}
    {%- endif -%}
    {{ return((number | int) * units[unit]) }}
{% endmacro %}
