select
    cast(device_id as varchar) as device_id,
    cast(device_type as varchar) as device_type
from {{ source('raw', 'devices') }}
