select
    cast(transaction_id as varchar) as transaction_id,
    cast(user_id as varchar) as user_id,
    cast(merchant_id as varchar) as merchant_id,
    cast(device_id as varchar) as device_id,
    cast(amount as decimal(18, 2)) as amount,
    cast(currency as varchar) as currency,
    cast(transacted_at as timestamp) as transacted_at,
    cast(ingested_at as timestamp) as ingested_at
from {{ source('raw', 'transactions') }}
