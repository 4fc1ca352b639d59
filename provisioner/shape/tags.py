"""AWS's rules for tag keys and values, checked before anything is created.

EC2 takes almost any tag, but ACM, IAM and ELBv2 refuse one outside the rule common to every
service, `^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$`, at most 128 characters in a key and 256 in a value,
nothing starting with `aws:`. The first such call comes twenty-odd resources in (a 262-character
email got as far as ACM): a half-built stack that bills until someone runs `down`.
"""

from __future__ import annotations

import unicodedata

from provisioner.engine.errors import ConfigError

TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
# AWS keeps the prefix for its own tags, in any case ("AWS:", "Aws:").
RESERVED_PREFIX = "aws:"
# Python's `re` has no \p{...}: letters (L*), separators (Z*: spaces, U+2028, U+2029) and
# numbers (N*) are read from the Unicode category, and these are the rule's only punctuation.
# Newline, tab and NUL are controls (Cc), combining accents (a decomposed "ë") are marks (M*):
# both outside the rule.
PUNCTUATION = frozenset("_.:/=+-@")
# What fit_tag_value() writes for a character outside the rule.
REPLACEMENT = "_"


def allowed(char: str) -> bool:
    return char in PUNCTUATION or unicodedata.category(char)[0] in "LZN"


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    if not name:
        category = unicodedata.category(char)
        name = "a control character" if category == "Cc" else f"of Unicode category {category}"
        return f"{char!r} (U+{ord(char):04X}, {name})"
    return f"{char!r} (U+{ord(char):04X} {name})"


def tag_problem(text: str, *, key: bool = False) -> str | None:
    """What AWS would refuse in this tag key (`key`) or value, as the end of a sentence that
    starts with the value; None when it fits."""
    what = "tag key" if key else "tag value"
    limit = TAG_KEY_MAX if key else TAG_VALUE_MAX
    if key and not text:
        return "is empty; a tag key needs at least one character"
    # Unicode characters (code points), as AWS counts them; not UTF-8 bytes.
    if len(text) > limit:
        return f"is {len(text)} characters; a {what} holds at most {limit}"
    if text[:len(RESERVED_PREFIX)].lower() == RESERVED_PREFIX:
        return f"starts with {text[:len(RESERVED_PREFIX)]!r}, which AWS keeps for its own tags"
    bad = list(dict.fromkeys(c for c in text if not allowed(c)))
    if bad:
        return (f"contains {', '.join(_describe(c) for c in bad[:3])}{' and more' if len(bad) > 3 else ''}; "
                f"a {what} may hold letters, digits, spaces and {''.join(sorted(PUNCTUATION))} only")
    return None


def fit_tag_value(text: str) -> str:
    """`text` made into a tag value AWS takes: each character outside the rule replaced, cut to
    TAG_VALUE_MAX. For values that are facts, not input to refuse: the caller's ARN (IAM names
    may hold a comma, and an IAM user's path, up to 512 characters, takes the ARN past 256)."""
    value = "".join(c if allowed(c) else REPLACEMENT for c in text)[:TAG_VALUE_MAX]
    if value[:len(RESERVED_PREFIX)].lower() == RESERVED_PREFIX:
        value = REPLACEMENT + value[:TAG_VALUE_MAX - 1]
    return value


def shown(value: str, width: int = 40) -> str:
    """A value for a message: quoted, escapes visible, a long one cut after `width` ('xx'...)."""
    return repr(value) if len(value) <= width else f"{value[:width]!r}..."


def check_tag_value(key: str, value: str | None, label: str, hint: str = "") -> None:
    """Refuse (ConfigError, exit 2) a value that would become the `key` tag and that AWS refuses."""
    problem = tag_problem(value) if value else None
    if problem:
        raise ConfigError(f"{label} {shown(value)} {problem}",
                          hint=f"it becomes the {key} tag of every resource, and AWS refuses the resource "
                               "with the tag" + (f"; {hint}" if hint else ""))
