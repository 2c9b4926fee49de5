{#-
    The as-of join keeps the spine: fraud_training_set has exactly one row per row of
    fraud_training_spine (a join that dropped or duplicated labelled transactions would bias
    the training data). Returns the transactions that break it.
-#}
with spine as (
    select transaction_id, count(*) as spine_rows
    from {{ ref('fraud_training_spine') }}
    group by transaction_id
),

training as (
    select transaction_id, count(*) as training_rows
    from {{ ref('fraud_training_set') }}
    group by transaction_id
)

select
    coalesce(spine.transaction_id, training.transaction_id) as transaction_id,
    coalesce(spine.spine_rows, 0) as spine_rows,
    coalesce(training.training_rows, 0) as training_rows
from spine
full outer join training
    on spine.transaction_id = training.transaction_id
where coalesce(spine.spine_rows, 0) <> coalesce(training.training_rows, 0)
