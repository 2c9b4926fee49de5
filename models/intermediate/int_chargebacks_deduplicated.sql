{#-
    One row per chargeback_id (first ingested copy wins), same incremental rules as
    int_transactions_deduplicated.
-#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='chargeback_id') }}

with candidates as (
    select
        chargeback_id,
        transaction_id,
        charged_back_at,
        ingested_at,
        reason
    from {{ ref('stg_raw__chargebacks') }}
    where chargeback_id is not null
        and transaction_id is not null
        and charged_back_at is not null
        and ingested_at is not null
    {% if is_incremental() %}
        and ingested_at > {{ featurestore.ingestion_watermark('ingested_at') }}
    {% endif %}
),

competing as (
    select * from candidates
    {% if is_incremental() %}
    union all
    select
        stored.chargeback_id,
        stored.transaction_id,
        stored.charged_back_at,
        stored.ingested_at,
        stored.reason
    from {{ this }} as stored
    where stored.chargeback_id in (select chargeback_id from candidates)
    {% endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by chargeback_id
            order by ingested_at, charged_back_at, transaction_id, reason nulls last
        ) as copy_rank
    from competing
)

select
    chargeback_id,
    transaction_id,
    charged_back_at,
    ingested_at,
    reason
from ranked
where copy_rank = 1
