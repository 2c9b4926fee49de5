{#- The served-vector log against the warehouse, row by row (macros/skew_comparison.sql
    states the rules). The macro finds the online views in the registry when the model
    runs, after dbt has read the dependencies: each online view is named here, once
    (tests/dbt/test_skew.py fails when one is missing). -#}
-- depends_on: {{ ref('merchant_chargeback_features') }}
-- depends_on: {{ ref('merchant_transaction_features') }}
-- depends_on: {{ ref('user_device_features') }}
-- depends_on: {{ ref('user_transaction_features') }}
{{ featurestore.skew_comparison(ref('stg_served__vectors')) }}
