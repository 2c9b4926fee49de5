{{ featurestore.latest_feature_values('user_transaction_features') }}
