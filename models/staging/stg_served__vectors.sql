{#- The served-vector log (featurestore/served_log.py), typed: keys and value stay JSON
    (VARIANT on Snowflake); the comparison reads them per feature view and feature type. -#}
select
    cast(request_at as timestamp) as request_at,
    cast(request_id as varchar) as request_id,
    cast(entity as varchar) as entity,
    cast(entity_key as varchar) as entity_key,
    keys,
    cast(feature as varchar) as feature,
    value,
    cast(status as varchar) as status,
    cast(reason as varchar) as reason
from {{ source('served', 'vectors') }}
