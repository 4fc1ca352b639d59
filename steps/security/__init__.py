"""What protects and records the stack (--audit): its customer-managed KMS key, where the
account's API activity and the VPC's traffic are recorded (a CloudTrail trail to its own bucket,
VPC flow logs to CloudWatch Logs) and what watches them (GuardDuty)."""
