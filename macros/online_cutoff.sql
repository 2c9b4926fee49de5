{#- The instant C the online models and the snapshots are computed as of: the var
    `online_as_of` ('YYYY-MM-DD HH:MM:SS', UTC) when set, else now (utc_now), as a
    timestamp without time zone. -#}
{% macro online_cutoff() %}
    {%- set as_of = var('online_as_of', none) -%}
    {%- if as_of -%}
        {{ return("cast('" ~ as_of ~ "' as timestamp)") }}
    {%- else -%}
        {{ return(featurestore.utc_now() | trim) }}
    {%- endif -%}
{% endmacro %}
