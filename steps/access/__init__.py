"""Who may reach what: security groups and the SSH key pair."""
