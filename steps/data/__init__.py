"""The data tier, used by the app: what keeps its state outside the instances, in the data
subnets or reached from the app subnets (the cache, the shared file system, and their secrets)."""
