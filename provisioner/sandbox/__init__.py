"""The built-in emulator: moto in server mode on loopback, with the patches that make it behave as
AWS does where the tool relies on it."""
