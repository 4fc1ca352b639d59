"""The instances' identity: their IAM role and instance profile."""
