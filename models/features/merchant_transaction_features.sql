{#- Declared feature view (models/features/_features__models.yml): everything is generated
    from the declaration by macros/windowed_features.sql, whose header states the rule. The
    depends_on line tells dbt at parse time about the declared event model. -#}
-- depends_on: {{ ref('int_transactions_deduplicated') }}
{{ featurestore.windowed_features() }}
