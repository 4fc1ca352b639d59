"""The account guard: the accounts this machine may change, so that a lab laptop holding an
instructor's credentials, or a shell left on the wrong profile, cannot build in (or wipe) the
wrong account.

The allow-list comes from PROVISION_ALLOWED_ACCOUNTS (comma-separated ids) or, if that is not
set, from the config file's ``[accounts] allowed = ...`` (``$PROVISION_CONFIG``, else
``$XDG_CONFIG_HOME/provision/config.ini``, else ``~/.config/provision/config.ini``). No list means
no guard. The sandbox is never guarded: it is not an account.
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

from provisioner.engine.errors import ConfigError

ENV = "PROVISION_ALLOWED_ACCOUNTS"
# ASCII digits, the whole id: `\d` takes other scripts' digits, `$` a trailing newline.
ACCOUNT_RE = re.compile(r"\A[0-9]{12}\Z")


def config_path() -> Path:
    if os.environ.get("PROVISION_CONFIG"):
        return Path(os.environ["PROVISION_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "provision" / "config.ini"


def _parse(raw: str, where: str) -> list[str]:
    ids = [part.strip() for part in re.split(r"[,\s]+", raw) if part.strip()]
    bad = [i for i in ids if not ACCOUNT_RE.fullmatch(i)]
    if bad:
        raise ConfigError(f"{where}: {', '.join(repr(b) for b in bad)} is not a 12-digit AWS account id",
                          hint="list account ids separated by commas, e.g. 111122223333,444455556666")
    if not ids:
        raise ConfigError(f"{where} is set but lists no account",
                          hint="list the accounts this machine may change, or unset it to turn the guard off")
    return ids


def allowed_accounts() -> tuple[list[str], str] | None:
    """The allowed account ids and where they were configured, or None when no guard is set."""
    raw = os.environ.get(ENV)
    if raw is not None:
        return _parse(raw, ENV), ENV
    path = config_path()
    if not path.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"cannot read {path}: {e}",
                          hint="the file takes a section [accounts] with `allowed = 111122223333, ...`") from None
    if not parser.has_option("accounts", "allowed"):
        return None
    return _parse(parser.get("accounts", "allowed"), f"{path} [accounts] allowed"), str(path)


def check_account(account: str, *, sandbox: bool, action: str) -> None:
    """Refuse (exit 2) to `action` in an account the allow-list does not name."""
    if sandbox:
        return
    configured = allowed_accounts()
    if configured is None:
        return
    ids, where = configured
    if account not in ids:
        raise ConfigError(
            f"refusing to {action} in account {account}: it is not in the allowed accounts "
            f"({', '.join(ids)}, from {where})",
            hint="check the credentials (--profile, AWS_PROFILE); if this account is meant, add it to "
                 f"{ENV} or the config file")
