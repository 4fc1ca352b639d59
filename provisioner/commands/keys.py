"""The stack's SSH key and known hosts, kept in the state directory beside the state file.

Layout: ``<state-dir>/<stack>.id_ed25519`` (the private key, OpenSSH format, mode 0600) and
``<stack>.known_hosts`` (host keys remembered on first use, verified afterwards). The key is made
here and only its public half goes to EC2 (ImportKeyPair): the private key is on disk before AWS
knows the key pair, so an interrupted run can never leave a key pair whose private half is lost.
"""

from __future__ import annotations

import os
from pathlib import Path

from provisioner.engine.errors import ConfigError
from provisioner.engine.state import make_state_dir, write_atomic

class KeyStore:
    def __init__(self, state_dir: str | os.PathLike, stack: str):
        self.dir = Path(state_dir)
        self.stack = stack
        self.private_key_path = self.dir / f"{stack}.id_ed25519"
        self.known_hosts_path = self.dir / f"{stack}.known_hosts"

    def exists(self) -> bool:
        return self.private_key_path.exists()

    def generate(self) -> str:
        """A new ed25519 key, written with mode 0600 from its first byte (never readable by
        others, not even for a moment); returns its public half in OpenSSH form."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        make_state_dir(self.dir)
        write_atomic(self.private_key_path, private)
        return self.public_key()

    def public_key(self) -> str:
        """The public half ("ssh-ed25519 AAAA..."), from the private key on disk."""
        from cryptography.hazmat.primitives import serialization

        key = self._load()
        return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode("ascii")

    def check_permissions(self) -> None:
        """Refuse a private key others can read, as OpenSSH does."""
        mode = self.private_key_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"the private key {self.private_key_path} has mode {mode:04o}; others can read it",
                              hint=f"chmod 600 {self.private_key_path}")

    def check_usable(self) -> None:
        """Before `up --bastion` builds anything: a private key already there must be one the
        key pair step can use as it is (a file, readable by its owner only, an OpenSSH private
        key). Met only at that step, a bad one stopped a build 20 resources in; and a file that
        is no key is not the tool's to overwrite. No key yet is fine: the step makes one, in a
        state directory the run has already found writable."""
        path = self.private_key_path
        if not path.exists() and not path.is_symlink():
            return
        if not path.is_file():
            raise ConfigError(f"{path} is not a file; the stack's SSH private key belongs there",
                              hint="move it aside: `provision up --bastion` then makes a new key there")
        self.check_permissions()
        self._load()

    def remove(self) -> None:
        for path in (self.private_key_path, self.known_hosts_path):
            path.unlink(missing_ok=True)

    def _load(self):
        from cryptography.hazmat.primitives import serialization

        try:
            data = self.private_key_path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"no private key at {self.private_key_path}",
                              hint="`provision up --bastion` makes one (pass the --state-dir it used)") from None
        except OSError as e:
            raise ConfigError(f"cannot read the private key {self.private_key_path}: {e.strerror}") from None
        try:
            return serialization.load_ssh_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{self.private_key_path} is not a readable OpenSSH private key: {e}",
                              hint="move it aside if it is yours: `provision up --bastion` then makes a new key "
                                   "(and replaces the stack's key pair)") from None
