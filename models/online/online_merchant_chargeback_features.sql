{{ featurestore.latest_feature_values('merchant_chargeback_features') }}
