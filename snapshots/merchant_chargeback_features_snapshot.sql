{#- SCD2 history of merchant_chargeback_features's current online value (models/online:
    the rows at or before the cutoff; the scheduled rows are left out). dbt_valid_from is the value's feature timestamp,
    dbt_valid_to the feature timestamp of the value that replaced it. Read a table as of a past
    time T (UTC), README "Snapshots: reading features as of a past time":
    select * from <snapshot> where dbt_valid_from <= T and (dbt_valid_to > T or dbt_valid_to is null) -#}
{% snapshot merchant_chargeback_features_snapshot %}
{{ config(unique_key=['merchant_id'], strategy='timestamp', updated_at='merchant_chargeback_features__feature_at') }}
select * from {{ ref('online_merchant_chargeback_features') }}
where merchant_chargeback_features__feature_at <= as_of_at
{% endsnapshot %}
