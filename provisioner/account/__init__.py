"""The account-wide view: the inventory of every stack's resources, their prices, the quotas they
use, the IAM policy a shape needs, the checks made before anything changes (preflight, the
account guard) and the expiry times stacks carry."""
