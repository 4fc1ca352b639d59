"""What runs the app: the launch template, the Auto Scaling Group, the bastion."""
