{#-
    Benchmark-only feature view (entity user), built by bench/pit_join.py: its rows are read
    as generated from the Parquet files in $FEATURESTORE_BENCH_DATA (default bench/data), with
    deliberate ties (rows sharing user_id and feature_at or as-of key), null available_at and
    null feature values. Disabled unless the dbt var featurestore_bench is true.
-#}
select
    cast(user_id as varchar) as user_id,
    cast(feature_at as timestamp) as feature_at,
    cast(available_at as timestamp) as available_at,
    cast(bench_feature_01 as bigint) as bench_feature_01,
    cast(bench_feature_02 as bigint) as bench_feature_02,
    cast(bench_feature_03 as bigint) as bench_feature_03,
    cast(bench_feature_04 as bigint) as bench_feature_04,
    cast(bench_feature_05 as double) as bench_feature_05,
    cast(bench_feature_06 as double) as bench_feature_06,
    cast(bench_feature_07 as double) as bench_feature_07,
    cast(bench_feature_08 as double) as bench_feature_08,
    cast(bench_feature_09 as boolean) as bench_feature_09,
    cast(bench_feature_10 as boolean) as bench_feature_10
from read_parquet('{{ env_var("FEATURESTORE_BENCH_DATA", "bench/data") }}/*.parquet')
