"""What protects the stack's data (--audit): its customer-managed KMS key."""
