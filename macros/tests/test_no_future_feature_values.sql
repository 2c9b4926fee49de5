{#-
    Point-in-time guard for training sets: fails for every row where a joined feature row's
    feature timestamp or as-of key (availability) is later than the spine timestamp.
-#}
{% test no_future_feature_values(model, spine_timestamp, timestamp_columns) %}
select *
from {{ model }}
where
    {%- for column in timestamp_columns %}
    {{ column }} > {{ spine_timestamp }}{% if not loop.last %} or{% endif %}
    {%- endfor %}
{% endtest %}
