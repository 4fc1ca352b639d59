"""The only place that prints: progress, summaries, tables and errors."""
