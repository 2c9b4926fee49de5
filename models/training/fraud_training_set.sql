{#-
    Fraud training set: every labelled transaction joined, as of its transacted_at, to the
    four features of the design document (point-in-time correct; see macros/as_of_join.sql).
    <view>__feature_at / <view>__as_of_at say which feature row was used.
-#}
{{ featurestore.as_of_join(
    ref('fraud_training_spine'),
    'transacted_at',
    [
        featurestore.feature_view('user_transaction_features'),
        featurestore.feature_view('merchant_chargeback_features'),
        featurestore.feature_view('user_device_features'),
    ],
    include_timestamps=true,
    spine_columns=['transaction_id', 'user_id', 'merchant_id', 'device_id', 'amount',
                   'transacted_at', 'is_fraud', 'labeled_at'],
) }}
