"""Stack files: a stack's shape in TOML, written by `provision init [--preset NAME] [FILE]` and
read by `up`, `plan`, `policy`, `down` and `status` with `-f FILE`.

Keys are the options' (provisioner/shape/options.py), plus `stack` and `region`. Precedence, lowest
first: the defaults, the shape the stack was last built with (its state file), the file, the
command line. A key the tool does not know, a value of the wrong type or one its option refuses
stops the command with exit 2, naming the key, its line and what is expected; nothing is
created and AWS is not called.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
import textwrap
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from provisioner.engine.errors import ConfigError
from provisioner.shape.options import BY_KEY, OPTIONS, overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (3.10)
    import tomli as tomllib

DEFAULT_FILE = "stack.toml"
PLACE_KEYS = {"stack": "the stack's name (--stack and PROVISION_STACK win)",
              "region": "the AWS region (--region wins)"}
# What a commented-out line shows for an option without a default value.
EXAMPLES = {"ami": "ami-0123456789abcdef0", "domain": "shop.example.com",
            "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/<uuid>", "ttl": "4h",
            "expires_at": "2027-01-31T18:00:00Z", "ssh_cidr": "203.0.113.7/32"}


@dataclass
class StackFile:
    path: str
    values: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.path}, line {line}" if line else self.path


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^[ \t]*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')[ \t]*=", re.M)
    match = pattern.search(text) or re.compile(rf"^[ \t]*\[+[ \t]*{re.escape(key)}[ \t]*\]", re.M).search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _expected(kind: type) -> str:
    return {str: "a string", int: "a whole number", bool: "true or false",
            list: "a list of strings, e.g. [\"10.0.1.0/24\", \"10.0.2.0/24\"]"}[kind]


def _type_ok(kind: type, value: Any) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    return isinstance(value, kind)


def load(path: str) -> StackFile:
    """Read and check a stack file (keys and types; values are checked with the command's)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no stack file {path}", hint=f"`provision init {path}` writes one") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the stack file {path}: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}", hint="see https://toml.io for the syntax") from None
    stack_file = StackFile(path, {}, {k: _line_of(text, k) for k in data})
    known = sorted(set(BY_KEY) | set(PLACE_KEYS))
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"{stack_file.where(key)}: unknown key {key!r}"
                              + (f"; did you mean {close[0]!r}?" if close else "")
                              + (" (a stack file has no [tables]: every key is at the top)"
                                 if isinstance(value, dict) else ""),
                              hint="`provision init --preset stylesphere -` prints every key with its meaning")
        kind = str if key in PLACE_KEYS else BY_KEY[key].kind
        if isinstance(value, dict) or not _type_ok(kind, value):
            raise ConfigError(f"{stack_file.where(key)}: {key} is {json.dumps(value, default=str)}; "
                              f"expected {_expected(kind)}")
        stack_file.values[key] = value
    return stack_file


def file_overrides(stack_file: StackFile) -> dict:
    """The file's options as StackConfig overrides; a value its option refuses names its line."""
    result: dict[str, Any] = {}
    values = stack_file.values
    for key, value in values.items():
        if key in PLACE_KEYS or key == "allow_wide_ssh":
            continue
        try:
            one = overrides({key: value})
        except ConfigError as e:
            raise ConfigError(f"{stack_file.where(key)}: {key}: {e.message}", hint=e.hint) from None
        result.update({k: v for k, v in one.items() if v is not None and k != "allow_wide_ssh"})
    # The permission comes with the file's CIDR, as with flags: a CIDR without it drops it.
    if "allow_wide_ssh" in values:
        result["allow_wide_ssh"] = values["allow_wide_ssh"]
    elif "ssh_cidr" in values:
        result["allow_wide_ssh"] = False
    return result


def culprit(stack_file: StackFile, base, merged: dict) -> str | None:
    """For a configuration the file makes invalid: the one key without which it is valid."""
    for key in (k for k in stack_file.values if k not in PLACE_KEYS):
        option = BY_KEY[key]
        fields = [option.field] if option.field else ["expires_at"]
        without = {k: v for k, v in merged.items() if k not in fields}
        try:
            base.merged(without).validate()
        except ConfigError:
            continue
        return key
    return None


def apply(opts, flag_values: dict[str, Any], path: str | None) -> dict:
    """The shape overrides of a command: the file's, then the flags' on top. Sets opts.stack and
    opts.region from the file when the command line gave none, and opts.shape_notes to what the
    flags override."""
    flags = overrides(flag_values)
    opts.shape_notes = []
    if not path:
        return flags
    stack_file = load(path)
    apply_place(opts, stack_file)
    from_file = file_overrides(stack_file)
    merged = dict(from_file)
    for key, value in flags.items():
        if value is None:
            continue
        if key in from_file and from_file[key] != value:
            option = next(o for o in OPTIONS if o.field == key or (o.field is None and key == "expires_at"))
            opts.shape_notes.append(f"{option.flag} overrides {option.key} = {_toml(from_file[key], option)} "
                                    f"from {stack_file.where(option.key)}")
        merged[key] = value
    _check_whole(opts, stack_file, merged)
    return merged


def apply_place(opts, stack_file: StackFile) -> None:
    if "stack" in stack_file.values and not getattr(opts, "stack_given", True):
        opts.stack = stack_file.values["stack"]
    if "region" in stack_file.values and not opts.region:
        opts.region = stack_file.values["region"]


def _check_whole(opts, stack_file: StackFile, merged: dict) -> None:
    """The file's values together, on the shape the stack was built with: a refused one names its line."""
    from provisioner.shape.config import StackConfig, validate_stack_name
    from provisioner.engine.state import StateFile

    validate_stack_name(opts.stack)
    saved = StateFile(opts.state_dir, opts.stack).read()
    base = StackConfig.from_dict(saved.config if saved else {})
    try:
        base.merged(merged).validate()
    except ConfigError as e:
        key = culprit(stack_file, base, merged)
        if key is None:
            raise ConfigError(f"{stack_file.path}: {e.message}", hint=e.hint) from None
        raise ConfigError(f"{stack_file.where(key)}: {key}: {e.message}", hint=e.hint) from None


# -- writing ---------------------------------------------------------------------------------------

def _toml(value: Any, option=None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


def presets() -> dict[str, str]:
    """Preset name -> its description (the file's first comment line)."""
    found = {}
    for entry in sorted(files("provisioner.shape").joinpath("presets").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            first = entry.read_text(encoding="utf-8").splitlines()[0]
            found[entry.name[:-5]] = first.lstrip("# ").strip()
    return found


def preset_values(name: str) -> dict[str, Any]:
    known = presets()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        raise ConfigError(f"no preset {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                          hint="the presets: " + ", ".join(known))
    return tomllib.loads(files("provisioner.shape").joinpath("presets", f"{name}.toml").read_text(encoding="utf-8"))


def _default(option) -> Any:
    from provisioner.shape.config import StackConfig

    if option.field is None:
        return EXAMPLES.get(option.key)
    value = getattr(StackConfig(), option.field)
    return EXAMPLES.get(option.key) if value is None else value


def render(preset: str) -> str:
    """A commented stack file: the preset's values set, every other option commented out with its
    default (or an example)."""
    values = preset_values(preset)
    out = [*textwrap.wrap(f"provision stack file, from the preset {preset!r}: {presets()[preset]}.", width=98,
                          initial_indent="# ", subsequent_indent="# "),
           "# `provision plan -f FILE` shows what `provision up -f FILE` would do; options given on the",
           "# command line override the file, and the file overrides the shape the stack was built with.",
           "# A commented-out line shows the default (or an example).", ""]
    for key, meaning in PLACE_KEYS.items():
        out.append(f"# {meaning[0].upper()}{meaning[1:]}.")
        out.append(f"{key} = {_toml(values[key])}" if key in values else f"# {key} = \"us-east-1\"")
        out.append("")
    for option in OPTIONS:
        about = f"{option.help} [{option.default}]" + (f"; {option.more}." if option.more else ".")
        out += textwrap.wrap(about, width=98, initial_indent="# ", subsequent_indent="# ")
        if option.key in values:
            out.append(f"{option.key} = {_toml(values[option.key])}")
        else:
            default = _default(option)
            out.append(f"# {option.key} = {_toml(default)}" if default is not None else f"# {option.key} =")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def cmd_init(reporter, preset: str, path: str, force: bool) -> int:
    if preset == "list":
        for name, description in presets().items():
            reporter.out.print(f"{name:<16} {description}", highlight=False)
        return 0
    text = render(preset)
    if path == "-":
        sys.stdout.write(text)
        return 0
    target = Path(path)
    if target.exists() and not force:
        raise ConfigError(f"{path} exists; not overwriting it", hint="pass --force to replace it, or name another file")
    if target.is_dir():
        raise ConfigError(f"{path} is a directory")
    target.write_text(text, encoding="utf-8")
    reporter.out.print(f"Wrote {path} (preset {preset}). `provision plan -f {path}` shows what `provision up "
                       f"-f {path}` would build.", highlight=False)
    return 0
