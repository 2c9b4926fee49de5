{#- Training-serving skew per online feature (README "Training-serving skew"): every online
    feature of the registry, whether or not the log holds rows of it, with its threshold
    (meta.featurestore.skew_threshold, default 0). Rates are null when no row was compared. -#}
{%- set features = [] -%}
{%- for view in featurestore.online_feature_views() -%}
    {%- for feature in view['features'] -%}
        {%- do features.append({'name': feature['name'], 'view': view['name'],
                                'entity': view['entity'], 'threshold': feature['skew_threshold']}) -%}
    {%- endfor -%}
{%- endfor -%}

with online_features as (
    {%- for f in features %}
    select
        '{{ f['name'] }}' as feature,
        '{{ f['view'] }}' as feature_view,
        '{{ f['entity'] }}' as entity,
        cast({{ f['threshold'] }} as double) as threshold
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- else %}
    select
        cast(null as varchar) as feature,
        cast(null as varchar) as feature_view,
        cast(null as varchar) as entity,
        cast(null as double) as threshold
    where 1 = 0
    {%- endfor %}
),

counts as (
    select
        feature,
        count(case when outcome <> 'store_unavailable' then 1 end) as rows_compared,
        count(case when is_match then 1 end) as matches,
        count(case when is_exact_match then 1 end) as exact_matches,
        count(case when outcome = 'value_mismatch' then 1 end) as value_mismatches,
        count(case when outcome = 'served_but_missing_offline' then 1 end) as served_but_missing_offline,
        count(case when outcome = 'offline_but_defaulted_online' then 1 end) as offline_but_defaulted_online,
        count(case when outcome = 'store_unavailable' then 1 end) as store_unavailable,
        avg(abs_diff) as mean_abs_diff
    from {{ ref('skew_comparison') }}
    group by feature
),

report as (
    select
        online_features.feature,
        online_features.feature_view,
        online_features.entity,
        coalesce(counts.rows_compared, 0) as rows_compared,
        coalesce(counts.matches, 0) as matches,
        coalesce(counts.exact_matches, 0) as exact_matches,
        coalesce(counts.value_mismatches, 0) as value_mismatches,
        coalesce(counts.served_but_missing_offline, 0) as served_but_missing_offline,
        coalesce(counts.offline_but_defaulted_online, 0) as offline_but_defaulted_online,
        coalesce(counts.store_unavailable, 0) as store_unavailable,
        counts.mean_abs_diff,
        online_features.threshold
    from online_features
    left join counts on counts.feature = online_features.feature
)

select
    feature,
    feature_view,
    entity,
    rows_compared,
    case when rows_compared > 0 then cast(exact_matches as double) / rows_compared end as exact_match_rate,
    case when rows_compared > 0 then cast(rows_compared - matches as double) / rows_compared end as mismatch_rate,
    rows_compared - matches as mismatches,
    value_mismatches,
    served_but_missing_offline,
    offline_but_defaulted_online,
    mean_abs_diff,
    store_unavailable,
    threshold
from report
