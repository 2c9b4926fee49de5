{#-
    Feature view: entity user_device (user_id, device_id). One row per pair, at the first
    time the pair transacted (feature_at = earliest transacted_at), with
    device_seen_before = true. available_at is the earliest ingested_at among the pair's
    transactions: from then on some transaction at or before that moment has arrived, so a
    system would know the pair. Through the as-of join the value is therefore true strictly
    after the first sighting was ingested, and null (serve the default, false) at the first
    transaction itself and for pairs never seen. Transactions without a device are ignored.

    last_ingested_at is bookkeeping for incremental runs (latest ingested_at of the pair).
    Incremental: pairs with transactions ingested since the watermark are recomputed from
    all their transactions (one aggregate per pair).
-#}
{{ config(unique_key=['user_id', 'device_id']) }}

with

{% if is_incremental() %}
changed_pairs as (
    select distinct user_id, device_id
    from {{ ref('int_transactions_deduplicated') }}
    where ingested_at > {{ featurestore.ingestion_watermark('last_ingested_at') }}
        and device_id is not null
),
{% endif %}

transactions as (
    select tx.user_id, tx.device_id, tx.transacted_at, tx.ingested_at
    from {{ ref('int_transactions_deduplicated') }} as tx
    {% if is_incremental() %}
    inner join changed_pairs
        on tx.user_id = changed_pairs.user_id
        and tx.device_id = changed_pairs.device_id
    {% endif %}
    where tx.device_id is not null
)

select
    user_id,
    device_id,
    min(transacted_at) as feature_at,
    min(ingested_at) as available_at,
    max(ingested_at) as last_ingested_at,
    true as device_seen_before
from transactions
group by user_id, device_id
