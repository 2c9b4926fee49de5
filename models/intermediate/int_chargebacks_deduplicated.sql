{#-
    One row per chargeback_id (first ingested copy wins), same incremental rules as
    int_transactions_deduplicated (macros/first_ingested_copies.sql).
-#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='chargeback_id') }}

{{ featurestore.first_ingested_copies(
    ref('stg_raw__chargebacks'),
    unique_key='chargeback_id',
    columns=['chargeback_id', 'transaction_id', 'charged_back_at', 'ingested_at', 'reason'],
    required=['chargeback_id', 'transaction_id', 'charged_back_at', 'ingested_at'],
    tie_breakers=['charged_back_at', 'transaction_id', 'reason'],
) }}
