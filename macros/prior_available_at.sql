{#-
    For an incremental feature view that recomputes each changed entity from its
    `recompute_from` time: the body of a CTE holding, per changed entity, the greatest
    `available_at` of its stored rows before that time (the running maximum the recomputed
    rows continue from; see seeded_available_at). `key` is the entity's key column,
    `changed` the CTE of changed entities with their `recompute_from`.
-#}
{% macro prior_available_at(key, changed) %}
    select
        stored.{{ key }},
        max(stored.available_at) as available_at
    from {{ this }} as stored
    inner join {{ changed }}
        on stored.{{ key }} = {{ changed }}.{{ key }}
        and stored.feature_at < {{ changed }}.recompute_from
    group by stored.{{ key }}
{% endmacro %}
