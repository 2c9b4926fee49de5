{#- SCD2 history of merchant_chargeback_features's current online value (models/online: the
    as_of_join value at the run's cutoff; the scheduled rows are left out). A value is valid
    from its as-of time, merchant_chargeback_features__as_of_at = greatest(feature_at,
    available_at): the instant as_of_join starts returning it. It is valid until the as-of
    time of the next value a run sees, the cutoff of the first run that no longer has the
    merchant (hard_deletes: invalidate, macros/snapshot_get_time.sql), or its TTL expiry
    (feature_at + ttl + 1 microsecond, macros/snapshot_expired_values.sql), whichever is
    first. Read the table as of a past time T (UTC), README "Snapshots: reading features as
    of a past time":
    select * from <snapshot> where dbt_valid_from <= T and (dbt_valid_to > T or dbt_valid_to is null) -#}
{% snapshot merchant_chargeback_features_snapshot %}
{{ config(
    unique_key=['merchant_id'],
    strategy='timestamp',
    updated_at='merchant_chargeback_features__as_of_at',
    hard_deletes='invalidate',
    post_hook="{{ featurestore.snapshot_expired_values('merchant_chargeback_features') }}",
) }}
select * from {{ ref('online_merchant_chargeback_features') }}
where merchant_chargeback_features__feature_at <= as_of_at
{% endsnapshot %}
