{#- dbt's snapshot clock, overridden for this project (dbt_project.yml dispatches the `dbt`
    namespace to this project first: https://docs.getdbt.com/reference/project-configs/dispatch-config).
    dbt stamps a hard-deleted row's dbt_valid_to with it (hard_deletes: invalidate), so an
    entity that left an online model is invalidated at the run's cutoff C (online_cutoff: the
    online_as_of var, else now, UTC) rather than at the wall-clock time of the run, the same
    instant the online models were computed as of (README "Snapshots"). -#}
{% macro default__snapshot_get_time() %}
    {{- featurestore.online_cutoff() -}}
{% endmacro %}
