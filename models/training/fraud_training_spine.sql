{#- The label spine: one row per labelled transaction, at the transaction's event time. -#}
{{ config(materialized='view') }}

select
    labels.transaction_id,
    tx.user_id,
    tx.merchant_id,
    tx.device_id,
    tx.amount,
    tx.transacted_at,
    labels.is_fraud,
    labels.labeled_at
from {{ ref('stg_raw__fraud_labels') }} as labels
inner join {{ ref('int_transactions_deduplicated') }} as tx
    on labels.transaction_id = tx.transaction_id
