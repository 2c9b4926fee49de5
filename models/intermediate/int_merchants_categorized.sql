{#-
    One row per merchant with its category's reference data (seeds/merchant_categories.csv):
    display name, risk tier and relative fraud risk. A category missing from the seed keeps
    its merchant (null reference columns) and fails the relationships test on `category`.
-#}
select
    merchants.*,
    categories.category_name, categories.risk_tier, categories.relative_fraud_risk
from {{ ref('stg_raw__merchants') }} as merchants
left join {{ ref('merchant_categories') }} as categories
    on merchants.category = categories.category
