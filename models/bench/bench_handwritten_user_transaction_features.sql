{#-
    Benchmark-only (bench/windowed_build.py): the hand-written user_transaction_features of
    before issue 11 (git show 2a315a7:models/features/user_transaction_features.sql), copied
    unchanged but for its feature names (prefixed bench_hw_ so they stay unique in the
    registry) and its materialization (set here: the features folder's incremental
    delete+insert, as it was built there). It reads the same int_transactions_deduplicated as
    the declared views, so both are built from one warehouse in one run. Disabled unless the
    dbt var featurestore_bench is true. Its original header follows.
-#}
{#-
    Feature view: entity user. One row per (user_id, feature_at) at every instant where a
    value can change: when a transaction enters a window (its transacted_at) and when it
    leaves one (transacted_at + 7 days, + 90 days). Windows are event-time, half-open
    (feature_at - window, feature_at]: a transaction exactly 7 days old is no longer counted.
    Values are exact running sums of +1/-1 (and +amount/-amount in decimal) deltas, so the
    value at any instant is the value of the latest row at or before it.

    available_at: the latest ingested_at of any transaction of the user at or before
    feature_at (conservative: a row becomes visible only once every event it may depend on
    has arrived; monotone in feature_at).

    Incremental: users with transactions ingested since the watermark are recomputed from
    the earliest event time among their new transactions (b). Rows at or after b only
    depend on transactions after b - 90 days, and the running max of ingested_at is seeded
    from the user's last stored row before b, so the result equals a full refresh.
-#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', on_schema_change='fail',
          unique_key=['user_id', 'feature_at']) }}

{%- set short_window_days = 7 -%}
{%- set long_window_days = 90 -%}

with

{% if is_incremental() %}
changed_users as (
    select
        user_id,
        min(transacted_at) as recompute_from
    from {{ ref('int_transactions_deduplicated') }}
    where ingested_at > {{ featurestore.ingestion_watermark('available_at') }}
    group by user_id
),

prior_state as (
    {{ featurestore.prior_available_at('user_id', 'changed_users') }}
),
{% endif %}

transactions as (
    select
        tx.user_id,
        tx.transacted_at,
        tx.amount,
        tx.ingested_at
    from {{ ref('int_transactions_deduplicated') }} as tx
    {% if is_incremental() %}
    inner join changed_users
        on tx.user_id = changed_users.user_id
        and tx.transacted_at > {{ dbt.dateadd('day', -long_window_days, 'changed_users.recompute_from') }}
    {% endif %}
),

deltas as (
    -- a transaction enters both windows
    select
        user_id,
        transacted_at as feature_at,
        1 as count_delta,
        case when amount is not null then 1 else 0 end as amount_count_delta,
        coalesce(amount, 0) as amount_sum_delta,
        ingested_at
    from transactions

    union all

    -- and leaves the 7-day window
    select
        user_id,
        {{ dbt.dateadd('day', short_window_days, 'transacted_at') }} as feature_at,
        -1 as count_delta,
        0 as amount_count_delta,
        0 as amount_sum_delta,
        cast(null as timestamp) as ingested_at
    from transactions

    union all

    -- and the 90-day window (only amounts matter there)
    select
        user_id,
        {{ dbt.dateadd('day', long_window_days, 'transacted_at') }} as feature_at,
        0 as count_delta,
        -1 as amount_count_delta,
        -amount as amount_sum_delta,
        cast(null as timestamp) as ingested_at
    from transactions
    where amount is not null
),

change_points as (
    select
        user_id,
        feature_at,
        sum(count_delta) as count_delta,
        sum(amount_count_delta) as amount_count_delta,
        sum(amount_sum_delta) as amount_sum_delta,
        max(ingested_at) as ingested_at
    from deltas
    group by user_id, feature_at
),

running as (
    select
        user_id,
        feature_at,
        sum(count_delta) over (partition by user_id order by feature_at rows between unbounded preceding and current row) as transaction_count_7d,
        sum(amount_count_delta) over (partition by user_id order by feature_at rows between unbounded preceding and current row) as amount_count_90d,
        sum(amount_sum_delta) over (partition by user_id order by feature_at rows between unbounded preceding and current row) as amount_sum_90d,
        max(ingested_at) over (partition by user_id order by feature_at rows between unbounded preceding and current row) as available_at
    from change_points
)

select
    running.user_id,
    running.feature_at,
    {{ featurestore.seeded_available_at() }} as available_at,
    cast(running.transaction_count_7d as bigint) as bench_hw_user_7d_transaction_count,
    case
        when running.amount_count_90d > 0
            then cast(running.amount_sum_90d as double) / running.amount_count_90d
    end as bench_hw_avg_order_value_90d
from running
{% if is_incremental() %}
inner join changed_users
    on running.user_id = changed_users.user_id
    and running.feature_at >= changed_users.recompute_from
left join prior_state
    on running.user_id = prior_state.user_id
{% endif %}
