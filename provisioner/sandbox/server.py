"""`python -m provisioner.sandbox.server -H 127.0.0.1 -p PORT`: moto's server with the patches
that make it behave like AWS where the tool relies on it (see emulator.py)."""

from moto.server import main

from provisioner.sandbox.emulator import apply

if __name__ == "__main__":
    apply()
    main()
