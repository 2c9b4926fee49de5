{#- The tiles of user_transaction_features as of online_as_of (macros/windowed_features.sql). -#}
-- depends_on: {{ ref('int_transactions_deduplicated') }}
{{ featurestore.windowed_features('user_transaction_features', output='tiles') }}
