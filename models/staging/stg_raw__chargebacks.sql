select
    cast(chargeback_id as varchar) as chargeback_id,
    cast(transaction_id as varchar) as transaction_id,
    cast(charged_back_at as timestamp) as charged_back_at,
    cast(ingested_at as timestamp) as ingested_at,
    cast(reason as varchar) as reason
from {{ source('raw', 'chargebacks') }}
