"""Watching the stack (--monitoring): the alert topic and its email subscription, the CloudWatch
alarms, the Auto Scaling group's scaling policies on CPU, the dashboard, and the app's logs in
CloudWatch Logs."""
