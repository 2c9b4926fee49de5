{#- Benchmark-only (bench/windowed_build.py): the online model of before issue 11
    (git show 2a315a7:models/online/online_user_transaction_features.sql) over the
    hand-written copy, so its time can be set beside the declared view's tiles models.
    Disabled unless the dbt var featurestore_bench is true. -#}
{{ featurestore.latest_feature_values('bench_handwritten_user_transaction_features') }}
