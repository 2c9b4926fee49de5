{#-
    The value of every entity of a feature view as of one instant (the `online_as_of` var,
    'YYYY-MM-DD HH:MM:SS' UTC, default now): the same as_of_join semantics (availability,
    ties, TTL) with a spine of every key of the view at that instant. Entities whose latest
    value is past the view's TTL are left out: there is nothing left to serve.
-#}
{% macro latest_feature_values(model_name) %}
    {%- set fv = featurestore.feature_view(model_name) -%}
    {%- set as_of = var('online_as_of', none) -%}
    {%- set spine -%}
    (
        select distinct
            {% for key in fv.join_keys.values() %}{{ key }},
            {% endfor -%}
            {% if as_of %}cast('{{ as_of }}' as timestamp){% else %}{{ featurestore.utc_now() }}{% endif %} as as_of_at
        from {{ fv.relation }}
    )
    {%- endset -%}
    select * from (
        {{ featurestore.as_of_join(spine, 'as_of_at', [fv], include_timestamps=true,
                                   spine_columns=(fv.join_keys.values() | list) + ['as_of_at']) }}
    ) as latest
    where {{ fv.name }}__feature_at is not null
{% endmacro %}
