"""Watching the stack (--monitoring): the alert topic and its email subscription, the CloudWatch
alarms, the Auto Scaling group's scaling policies on CPU, and the dashboard."""
