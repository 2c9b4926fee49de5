{#-
    The served-vector log compared with the warehouse, one row per logged (request, key,
    feature) of every online feature view (featurestore.online_feature_views()): the
    served value against the value featurestore.as_of_join gives at the logged request_at
    for the logged keys (the spine: the distinct keys and request_at of the view's logged
    rows). Rows of features no online view has are left out.

    Arguments
      served  relation with the log's columns (stg_served__vectors)

    Columns: request_at, request_id, entity, entity_key, feature, feature_view, status,
    reason, served_value (the logged JSON), offline_value (varchar), abs_diff (double:
    |served - offline| for a PRESENT number with an offline value, else null), outcome,
    is_match, is_exact_match.

    outcome (README "Training-serving skew"), in this order:
      store_unavailable             reason STORE_UNAVAILABLE: the store was down, the sidecar
                                    served the default; not compared (not skew)
      served_but_missing_offline    PRESENT, and the offline value is null
      match / value_mismatch        PRESENT, and the values are equal / not: int, bool,
                                    string, timestamp exactly (a timestamp is served as ISO
                                    8601 UTC text and compared as a timestamp, to the
                                    microsecond); float within |s - o| <= 1e-9 * max(1, |o|).
                                    A served value of the wrong JSON type never matches.
      match                         DEFAULT or MISSING, and the offline value is null (what
                                    the sidecar serves for no value), or DEFAULT and the
                                    served default equals the offline value (the same rule)
      offline_but_defaulted_online  DEFAULT or MISSING, and the offline value is not null
                                    (and differs from the served default)
    is_match: outcome = 'match'; is_exact_match: a match with equal values (no tolerance
    used: a float within the tolerance but not equal is a match, not an exact one).
-#}
{% macro skew_comparison(served) %}
    {%- set views = featurestore.online_feature_views() -%}
    {%- if not views %}
    select
        request_at, request_id, entity, entity_key, feature,
        cast(null as varchar) as feature_view, status, reason, value as served_value,
        cast(null as varchar) as offline_value, cast(null as double) as abs_diff,
        cast(null as varchar) as outcome, false as is_match, false as is_exact_match
    from {{ served }}
    where 1 = 0
    {%- else %}
    with
    {%- for view in views %}
    {%- set n = loop.index %}
    {%- set keys = view['keys'] | map(attribute='name') | list %}
    __fs_logged{{ n }} as (
        select
            {% for key in view['keys'] -%}
            cast({{ featurestore.json_text('keys', key['name']) }} as {{ key['data_type'] }}) as {{ key['name'] }},
            {% endfor -%}
            request_at, request_id, entity, entity_key, feature, value, status, reason
        from {{ served }}
        where feature in ({% for f in view['features'] %}'{{ f['name'] }}'{% if not loop.last %}, {% endif %}{% endfor %})
    ),
    __fs_log_spine{{ n }} as (
        select distinct {% for key in keys %}{{ key }}, {% endfor %}request_at
        from __fs_logged{{ n }}
    ),
    __fs_offline{{ n }} as (
        {{ featurestore.as_of_join('__fs_log_spine' ~ n, 'request_at',
                                   [featurestore.feature_view(view['name'])],
                                   spine_columns=keys + ['request_at']) }}
    ),
    {%- endfor %}
    __fs_pairs as (
    {%- for view in views %}
    {%- set n = loop.index %}
    {%- set keys = view['keys'] | map(attribute='name') | list %}
    {%- for f in view['features'] %}
        select
            s.request_at, s.request_id, s.entity, s.entity_key, s.feature,
            '{{ view['name'] }}' as feature_view, s.status, s.reason, s.value as served_value,
            cast(o.{{ f['name'] }} as varchar) as offline_value,
            {% if f['value_type'] in ('int', 'float') -%}
            case when s.status = 'PRESENT'
                then abs(cast({{ featurestore.served_value('s.value', f['value_type']) }} as double)
                         - cast(o.{{ f['name'] }} as double)) end
            {%- else -%}
            cast(null as double)
            {%- endif %} as abs_diff,
            o.{{ f['name'] }} is null as __fs_offline_null,
            coalesce({{ featurestore.served_value('s.value', f['value_type']) }} = o.{{ f['name'] }}, false) as __fs_equal,
            coalesce(
                {%- if f['value_type'] == 'float' %}
                abs({{ featurestore.served_value('s.value', f['value_type']) }} - o.{{ f['name'] }})
                    <= 1e-9 * greatest(1, abs(o.{{ f['name'] }}))
                {%- else %}
                {{ featurestore.served_value('s.value', f['value_type']) }} = o.{{ f['name'] }}
                {%- endif %}, false) as __fs_close
        from __fs_logged{{ n }} as s
        left join __fs_offline{{ n }} as o
            on {% for key in keys %}o.{{ key }} = s.{{ key }} and {% endfor %}o.request_at = s.request_at
        where s.feature = '{{ f['name'] }}'
        {%- if not loop.last %}
        union all
        {%- endif %}
    {%- endfor %}
    {%- if not loop.last %}
        union all
    {%- endif %}
    {%- endfor %}
    ),
    __fs_outcomes as (
        select
            *,
            case
                when reason = 'STORE_UNAVAILABLE' then 'store_unavailable'
                when status = 'PRESENT' and __fs_offline_null then 'served_but_missing_offline'
                when status = 'PRESENT' and __fs_close then 'match'
                when status = 'PRESENT' then 'value_mismatch'
                when __fs_offline_null then 'match'
                when status = 'DEFAULT' and __fs_close then 'match'
                else 'offline_but_defaulted_online'
            end as outcome
        from __fs_pairs
    )
    select
        request_at, request_id, entity, entity_key, feature, feature_view, status, reason,
        served_value, offline_value, abs_diff, outcome,
        outcome = 'match' as is_match,
        outcome = 'match' and (__fs_offline_null or __fs_equal) as is_exact_match
    from __fs_outcomes
    {%- endif %}
{% endmacro %}
