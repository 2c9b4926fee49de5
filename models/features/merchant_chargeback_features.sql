{#-
    Feature view: entity merchant. merchant_chargeback_rate_30d at feature_at = of the
    merchant's transactions with transacted_at in (feature_at - 30 days, feature_at], the
    fraction charged back at or before feature_at (a transaction counts as charged back from
    its earliest chargeback, and only while it is itself inside the window). Null when the
    window holds no transaction. One row per instant the rate can change: a transaction
    enters (transacted_at), a chargeback arrives (charged_back_at), a transaction leaves
    (transacted_at + 30 days).

    available_at: the latest ingested_at of any transaction or chargeback of the merchant at
    or before feature_at (monotone; see user_transaction_features).

    Incremental: merchants with transactions or chargebacks ingested since the watermark are
    recomputed from the earliest event time b among the new events, from transactions after
    b - 30 days, with the running max of ingested_at seeded from the last stored row before b.
-#}
{{ config(unique_key=['merchant_id', 'feature_at']) }}

{%- set window_days = 30 -%}

with

first_chargebacks as (
    -- a transaction is charged back once, at its earliest chargeback
    select transaction_id, charged_back_at, ingested_at
    from (
        select
            transaction_id,
            charged_back_at,
            ingested_at,
            row_number() over (
                partition by transaction_id order by charged_back_at, ingested_at, chargeback_id
            ) as chargeback_rank
        from {{ ref('int_chargebacks_deduplicated') }}
    ) as ranked
    where chargeback_rank = 1
),

{% if is_incremental() %}
new_event_times as (
    select tx.merchant_id, tx.transacted_at as event_at
    from {{ ref('int_transactions_deduplicated') }} as tx
    where tx.ingested_at > {{ featurestore.ingestion_watermark('available_at') }}
        and tx.merchant_id is not null

    union all

    select tx.merchant_id, cb.charged_back_at as event_at
    from {{ ref('int_chargebacks_deduplicated') }} as cb
    inner join {{ ref('int_transactions_deduplicated') }} as tx
        on cb.transaction_id = tx.transaction_id
    where cb.ingested_at > {{ featurestore.ingestion_watermark('available_at') }}
        and tx.merchant_id is not null
),

changed_merchants as (
    select merchant_id, min(event_at) as recompute_from
    from new_event_times
    group by merchant_id
),

prior_state as (
    {{ featurestore.prior_available_at('merchant_id', 'changed_merchants') }}
),
{% endif %}

transactions as (
    select
        tx.transaction_id,
        tx.merchant_id,
        tx.transacted_at,
        tx.ingested_at,
        {{ dbt.dateadd('day', window_days, 'tx.transacted_at') }} as leaves_window_at,
        cb.charged_back_at,
        cb.ingested_at as chargeback_ingested_at
    from {{ ref('int_transactions_deduplicated') }} as tx
    left join first_chargebacks as cb
        on tx.transaction_id = cb.transaction_id
    {% if is_incremental() %}
    inner join changed_merchants
        on tx.merchant_id = changed_merchants.merchant_id
        and tx.transacted_at > {{ dbt.dateadd('day', -window_days, 'changed_merchants.recompute_from') }}
    {% endif %}
    where tx.merchant_id is not null
),

deltas as (
    select merchant_id, transacted_at as feature_at,
        1 as transactions_delta, 0 as chargebacks_delta, ingested_at
    from transactions

    union all

    select merchant_id, leaves_window_at as feature_at,
        -1 as transactions_delta, 0 as chargebacks_delta, cast(null as timestamp) as ingested_at
    from transactions

    union all

    -- a chargeback counts from when it arrives until its transaction leaves the window
    select merchant_id, charged_back_at as feature_at,
        0 as transactions_delta, 1 as chargebacks_delta, chargeback_ingested_at as ingested_at
    from transactions
    where charged_back_at >= transacted_at and charged_back_at < leaves_window_at

    union all

    select merchant_id, leaves_window_at as feature_at,
        0 as transactions_delta, -1 as chargebacks_delta, cast(null as timestamp) as ingested_at
    from transactions
    where charged_back_at >= transacted_at and charged_back_at < leaves_window_at

    union all

    -- every other in-window chargeback of a transaction marks an instant too (no change):
    -- the set of change points then only grows as data arrives, so an incremental run
    -- re-emits (and so replaces) a stored row even after a later-arriving chargeback with an
    -- earlier time became the transaction's first one
    select tx.merchant_id, cb.charged_back_at as feature_at,
        0 as transactions_delta, 0 as chargebacks_delta, cast(null as timestamp) as ingested_at
    from transactions as tx
    inner join {{ ref('int_chargebacks_deduplicated') }} as cb
        on tx.transaction_id = cb.transaction_id
    where cb.charged_back_at >= tx.transacted_at and cb.charged_back_at < tx.leaves_window_at
),

change_points as (
    select
        merchant_id,
        feature_at,
        sum(transactions_delta) as transactions_delta,
        sum(chargebacks_delta) as chargebacks_delta,
        max(ingested_at) as ingested_at
    from deltas
    group by merchant_id, feature_at
),

running as (
    select
        merchant_id,
        feature_at,
        sum(transactions_delta) over (
            partition by merchant_id order by feature_at rows between unbounded preceding and current row
        ) as transactions_30d,
        sum(chargebacks_delta) over (
            partition by merchant_id order by feature_at rows between unbounded preceding and current row
        ) as chargebacks_30d,
        max(ingested_at) over (
            partition by merchant_id order by feature_at rows between unbounded preceding and current row
        ) as available_at
    from change_points
)

select
    running.merchant_id,
    running.feature_at,
    {{ featurestore.seeded_available_at() }} as available_at,
    case
        when running.transactions_30d > 0
            then cast(running.chargebacks_30d as double) / running.transactions_30d
    end as merchant_chargeback_rate_30d
from running
{% if is_incremental() %}
inner join changed_merchants
    on running.merchant_id = changed_merchants.merchant_id
    and running.feature_at >= changed_merchants.recompute_from
left join prior_state
    on running.merchant_id = prior_state.merchant_id
{% endif %}
