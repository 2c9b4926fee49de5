{#-
    What the online store holds of a hand-written feature view as of one instant C (the
    `online_as_of` var, 'YYYY-MM-DD HH:MM:SS' UTC, default now), column `as_of_at` = C:

    * each entity's *current* row: its value at C with the as_of_join semantics
      (availability, ties, TTL), a spine of every key of the view at C;
    * its *scheduled* rows: the history rows with C < feature_at <= C + the view's
      freshness_sla whose availability (coalesce(available_at, feature_at)) is <= C, ties
      on (keys, feature_at) reduced as as_of_join does (greatest values of the view's
      features in declared order, nulls last). They are the values as_of_join returns at the
      times after C, as known at C, so the sidecar can serve them between loads.

    Columns: the keys, `as_of_at`, the features, `<view>__feature_at`, `<view>__as_of_at`
    (the as-of key: greatest(feature_at, availability); on a scheduled row its feature_at)
    and `<view>__changed_at`, the same on all rows of one entity: the greatest over its rows
    of `<view>__as_of_at` (current row) and greatest(availability, feature_at - freshness_sla)
    (scheduled row), always <= C. An entity whose stored rows would differ after a later load
    has a row whose contribution is later than the earlier load's C, so the loader reads only
    `<view>__changed_at` > its watermark. An entity is left out only if its current value is
    past the view's TTL (or it has none) and it has no scheduled row. The current row is the
    one with `<view>__feature_at` <= `as_of_at`.
-#}
{% macro latest_feature_values(model_name) %}
    {%- set fv = featurestore.feature_view(model_name) -%}
    {%- set cutoff = featurestore.online_cutoff() -%}
    {%- set sla = fv.get('freshness_sla_seconds') or 0 -%}
    {%- set keys = fv.join_keys.values() | list -%}
    {%- set available -%}
        {%- if fv.available_at -%}coalesce({{ fv.available_at }}, {{ fv.timestamp }}){%- else -%}{{ fv.timestamp }}{%- endif -%}
    {%- endset -%}
    {%- set spine -%}
    (
        select distinct
            {% for key in keys %}{{ key }},
            {% endfor -%}
            {{ cutoff }} as as_of_at
        from {{ fv.relation }}
    )
    {%- endset -%}
    with current_rows as (
        select * from (
            {{ featurestore.as_of_join(spine, 'as_of_at', [fv], include_timestamps=true,
                                       spine_columns=keys + ['as_of_at']) }}
        ) as latest
        where {{ fv.name }}__feature_at is not null
    ),

    scheduled_rows as (
        select
            {% for key in keys %}{{ key }},
            {% endfor -%}
            as_of_at,
            {% for feature in fv.features %}{{ feature }},
            {% endfor -%}
            {{ fv.name }}__feature_at,
            {{ fv.name }}__as_of_at,
            __fs_contribution
        from (
            select
                {% for key in keys %}{{ key }},
                {% endfor -%}
                {{ cutoff }} as as_of_at,
                {% for feature in fv.features %}{{ feature }},
                {% endfor -%}
                {{ fv.timestamp }} as {{ fv.name }}__feature_at,
                {{ fv.timestamp }} as {{ fv.name }}__as_of_at,
                case when {{ available }} > {{ dbt.dateadd('second', -1 * (sla | int), fv.timestamp) }}
                     then {{ available }}
                     else {{ dbt.dateadd('second', -1 * (sla | int), fv.timestamp) }} end as __fs_contribution,
                row_number() over (
                    partition by {% for key in keys %}{{ key }}, {% endfor %}{{ fv.timestamp }}
                    order by {% for column in fv.tie_breakers %}{{ column }} desc nulls last{% if not loop.last %}, {% endif %}{% else %}{{ fv.timestamp }}{% endfor %}
                ) as __fs_tie_rank
            from {{ fv.relation }}
            where {{ fv.timestamp }} > {{ cutoff }}
              and {{ fv.timestamp }} <= {{ dbt.dateadd('second', sla | int, cutoff) }}
              and {{ available }} <= {{ cutoff }}
              {% for key in keys %}and {{ key }} is not null
              {% endfor %}
        ) as ranked
        where __fs_tie_rank = 1
    ),

    entity_rows as (
        select
            {% for key in keys %}{{ key }},
            {% endfor -%}
            as_of_at,
            {% for feature in fv.features %}{{ feature }},
            {% endfor -%}
            {{ fv.name }}__feature_at,
            {{ fv.name }}__as_of_at,
            {{ fv.name }}__as_of_at as __fs_contribution
        from current_rows
        union all
        select * from scheduled_rows
    )

    select
        {% for key in keys %}{{ key }},
        {% endfor -%}
        as_of_at,
        {% for feature in fv.features %}{{ feature }},
        {% endfor -%}
        {{ fv.name }}__feature_at,
        {{ fv.name }}__as_of_at,
        max(__fs_contribution) over (
            partition by {% for key in keys %}{{ key }}{% if not loop.last %}, {% endif %}{% endfor %}
        ) as {{ fv.name }}__changed_at
    from entity_rows
{% endmacro %}
