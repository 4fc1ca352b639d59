"""provision: build, run and tear down a production-shaped AWS web stack with one command."""

__version__ = "0.1.0"
