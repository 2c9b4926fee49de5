{#-
    Post-hook of a snapshot of a declared view's tiles (its online model): no snapshotted tile
    stays valid past the instant it leaves every window of its hop, tile_start + hop + the
    longest window of that hop (the tile model keeps a tile while that is later than the
    cutoff, macros/windowed_features.sql), when that is earlier than the dbt_valid_to dbt gave
    it (the cutoff of the first run without it, hard_deletes: invalidate). Current rows
    (dbt_valid_to null) are left alone: dbt recognizes them by it.
-#}
{% macro snapshot_expired_tiles(view_name) %}
    {%- if execute -%}
        {%- set d = featurestore.windowed_declaration(view_name) -%}
        {%- set lifetime -%}
            case tile_hop_seconds
                {%- for hop, longest in d.hops.items() %} when {{ hop }} then {{ hop + longest }}{% endfor %}
            end
        {%- endset -%}
        {%- set expires_at = dbt.dateadd('second', lifetime, 'tile_start') -%}
        update {{ this }}
        set dbt_valid_to = {{ expires_at }}
        where dbt_valid_to is not null
          and dbt_valid_to > {{ expires_at }}
    {%- endif -%}
{% endmacro %}
