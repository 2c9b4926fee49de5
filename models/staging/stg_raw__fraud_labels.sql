select
    cast(transaction_id as varchar) as transaction_id,
    cast(is_fraud as boolean) as is_fraud,
    cast(labeled_at as timestamp) as labeled_at
from {{ source('raw', 'fraud_labels') }}
