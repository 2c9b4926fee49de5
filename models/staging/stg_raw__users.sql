select
    cast(user_id as varchar) as user_id,
    cast(signed_up_at as timestamp) as signed_up_at,
    cast(country as varchar) as country
from {{ source('raw', 'users') }}
