"""The buckets and what goes in them: product images and the app's release."""
