{#- Fails for every row whose rate (column_name, e.g. the skew report's mismatch_rate) is
    above its own threshold (threshold_column); a null rate (nothing compared) passes. -#}
{% test mismatch_within_threshold(model, column_name, threshold_column='threshold') %}
select *
from {{ model }}
where {{ column_name }} > {{ threshold_column }}
{% endtest %}
