"""What watches the running stack: the app's logs in CloudWatch Logs (--monitoring)."""
