"""What the app keeps: the managed database and its subnet group, the DynamoDB catalog's tables,
the Redis cache with its AUTH token, and the shared file system."""
