{#-
    A recomputed row's `available_at`: the running maximum over the recomputed rows
    (`running.available_at`), seeded on incremental runs with the entity's stored maximum
    before the recompute point (`prior.available_at`, from prior_available_at), so that an
    incremental run gives what a full refresh gives.
-#}
{% macro seeded_available_at(running='running', prior='prior_state') %}
    {%- if is_incremental() -%}
    case
        when {{ prior }}.available_at > {{ running }}.available_at or {{ running }}.available_at is null
            then {{ prior }}.available_at
        else {{ running }}.available_at
    end
    {%- else -%}
    {{ running }}.available_at
    {%- endif -%}
{% endmacro %}
