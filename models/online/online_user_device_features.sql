{{ featurestore.latest_feature_values('user_device_features') }}
