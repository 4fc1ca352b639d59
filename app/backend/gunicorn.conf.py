# gunicorn settings for the StyleSphere API container.
import os

bind = "0.0.0.0:5000"
# Each worker builds the app itself (no preload_app): its store connects and seeds
# in a background thread, which would not survive a fork from a preloaded master.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
timeout = 30
graceful_timeout = 10
keepalive = 75  # longer than the ALB idle timeout's default of 60 s
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = "*"
