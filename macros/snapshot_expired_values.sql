{#-
    Post-hook of a snapshot of a hand-written view's online model: no snapshotted value stays
    valid past the instant as_of_join stops returning it because of the view's TTL.

    as_of_join returns a value at T while its feature timestamp is >= T - ttl, so the first
    instant it no longer does is feature_at + ttl + 1 microsecond (timestamps here have
    microsecond precision). dbt closes a row (dbt_valid_to) when a later run sees a new value
    (at that value's as-of time) or no value (hard_deletes: invalidate, at that run's cutoff);
    either can be later than the TTL expiry when the value expired between two runs. This
    statement moves every closed row's dbt_valid_to back to its expiry when the expiry is
    earlier. Current rows (dbt_valid_to null) are left alone: dbt recognizes them by it; the
    next run closes them if they have expired by then. Nothing when the view has no TTL.
-#}
{% macro snapshot_expired_values(view_name) %}
    {%- set fv = featurestore.feature_view(view_name) -%}
    {%- if fv.ttl_seconds is not none -%}
        {%- set expires_at = dbt.dateadd('microsecond', 1,
                dbt.dateadd('second', fv.ttl_seconds | int, fv.name ~ '__feature_at')) -%}
        update {{ this }}
        set dbt_valid_to = {{ expires_at }}
        where dbt_valid_to is not null
          and dbt_valid_to > {{ expires_at }}
    {%- endif -%}
{% endmacro %}
