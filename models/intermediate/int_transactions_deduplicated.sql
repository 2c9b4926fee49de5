{#-
    One row per transaction_id: the copy ingested first wins (exact duplicates and
    redeliveries collapse; conflicting copies resolve to the earliest-ingested one, then by
    column values). Rows missing the id, the user, or either timestamp are dropped (the
    staging tests report them). Incremental: see macros/first_ingested_copies.sql (a copy
    ingested earlier that lands in the warehouse later, within the lookback, still wins,
    exactly as in a full refresh).
-#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='transaction_id') }}

{{ featurestore.first_ingested_copies(
    ref('stg_raw__transactions'),
    unique_key='transaction_id',
    columns=['transaction_id', 'user_id', 'merchant_id', 'device_id', 'amount', 'currency',
             'transacted_at', 'ingested_at'],
    required=['transaction_id', 'user_id', 'transacted_at', 'ingested_at'],
    tie_breakers=['transacted_at', 'user_id', 'merchant_id', 'device_id', 'amount', 'currency'],
) }}
