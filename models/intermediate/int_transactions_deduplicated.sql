{#-
    One row per transaction_id: the copy ingested first wins (exact duplicates and
    redeliveries collapse; conflicting copies resolve to the earliest-ingested one, then by
    column values). Rows missing the id, the user, or either timestamp are dropped (the
    staging tests report them). Incremental: only rows ingested after the stored watermark
    (minus the lookback) are read, and ids already stored are skipped.
-#}
{{ config(materialized='incremental', incremental_strategy='append') }}

with candidates as (
    select *
    from {{ ref('stg_raw__transactions') }}
    where transaction_id is not null
        and user_id is not null
        and transacted_at is not null
        and ingested_at is not null
    {% if is_incremental() %}
        and ingested_at > {{ featurestore.ingestion_watermark('ingested_at') }}
    {% endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by transaction_id
            order by ingested_at, transacted_at, user_id, merchant_id nulls last,
                device_id nulls last, amount nulls last
        ) as copy_rank
    from candidates
)

select
    transaction_id,
    user_id,
    merchant_id,
    device_id,
    amount,
    currency,
    transacted_at,
    ingested_at
from ranked
where copy_rank = 1
{% if is_incremental() %}
    and not exists (
        select 1 from {{ this }} as stored where stored.transaction_id = ranked.transaction_id
    )
{% endif %}
