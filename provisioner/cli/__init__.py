"""The command line: click commands and their flags (made from the option declarations)."""
