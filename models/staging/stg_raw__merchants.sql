select
    cast(merchant_id as varchar) as merchant_id,
    cast(category as varchar) as category,
    cast(onboarded_at as timestamp) as onboarded_at
from {{ source('raw', 'merchants') }}
