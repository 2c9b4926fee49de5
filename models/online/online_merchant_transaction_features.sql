{#- The tiles of merchant_transaction_features as of online_as_of (macros/windowed_features.sql). -#}
-- depends_on: {{ ref('int_transactions_deduplicated') }}
{{ featurestore.windowed_features('merchant_transaction_features', output='tiles') }}
