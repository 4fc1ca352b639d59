"""What a stack is made of: the options (each declared once), the stack configuration they fill,
stack files and the presets shipped with the package, and AWS's rules for tag values."""
