"""A class roster: the CSV `provision fleet up --roster` reads, one stack per student.

The file is what a teacher exports from a spreadsheet or a learning platform, so the reader is
forgiving about form (column names in any case and spelling, a UTF-8 BOM from Excel, quoted
fields, blank and comment lines, extra columns it does not know) and strict about content: every
problem is reported at once, with its line number, before anything is created.

Stack names are derived from the student, never from the row's position, so that running
`fleet up` again on the same roster (sorted differently, a student added) finds the same stacks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from dataclasses import dataclass, field

from provisioner.shape.config import STACK_NAME_MAX, validate_stack_name
from provisioner.engine.context import TAG_STUDENT
from provisioner.engine.errors import ConfigError
from provisioner.shape.tags import shown, tag_problem

# A tag value the tool reads back (`cleanup --roster`, `list`): short, and the same whatever
# the shell or the spreadsheet did to the file name.
ROSTER_NAME_MAX = 32
# \A...\Z with fullmatch and ASCII classes, as in config.py: `$` lets a trailing newline through.
ROSTER_NAME_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*\Z")
# The roster's part of every stack name: short, so that the student's part stays readable
# within STACK_NAME_MAX (23 = ELBv2's 32 minus "-frontend").
PREFIX_MAX = 8
HASH_DIGITS = 4

# Header spellings, after lower-casing and dropping spaces, underscores and hyphens.
COLUMNS = {
    "name": ("name", "student", "fullname", "studentname"),
    "id": ("id", "studentid"),
    "email": ("email", "emailaddress", "owner", "owneremail"),
    "region": ("region",),
}
COLUMN_OF = {alias: column for column, aliases in COLUMNS.items() for alias in aliases}

# Simple on purpose: catches a name typed into the email column or a missing domain, not RFC 5322.
EMAIL_RE = re.compile(r"\A[^@\s,;]+@[^@\s,;]+\.[^@\s,;.]+\Z")
REGION_RE = re.compile(r"\A[a-z]{2}(-[a-z]+)+-[0-9]+\Z")


@dataclass(frozen=True)
class Student:
    row: int               # line number in the CSV (for error messages)
    name: str | None       # display name
    student_id: str | None
    email: str | None      # owner email (optional)
    region: str | None     # the row's own region; None: the command's --region
    stack: str             # derived stack name

    @property
    def key(self) -> str:
        """What identifies the student, and what the stack name is derived from."""
        return self.student_id or self.name or ""

    @property
    def label(self) -> str:
        """What tables show."""
        return self.name or self.student_id or self.email or ""

    @property
    def owner(self) -> str:
        """What the provision:student tag carries: whom the stack belongs to."""
        return self.email or self.student_id or self.name or ""


@dataclass
class Roster:
    name: str              # the provision:roster tag
    path: str
    students: list[Student] = field(default_factory=list)

    def regions(self, default_region: str) -> dict[str, list[Student]]:
        """The students by the region their stack goes to (sorted by region; roster order within)."""
        out: dict[str, list[Student]] = {}
        for student in self.students:
            out.setdefault(student.region or default_region, []).append(student)
        return {region: out[region] for region in sorted(out)}


# -- names ------------------------------------------------------------------------------------------

def slugify(text: str) -> str:
    """ASCII lower case, runs of anything else as one hyphen: "José Núñez" -> "jose-nunez"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def key_hash(key: str, digits: int = HASH_DIGITS) -> str:
    return hashlib.sha256(key.strip().encode("utf-8")).hexdigest()[:digits]


def _cut(slug: str, limit: int) -> str:
    """At most `limit` characters, at a hyphen when one leaves at least half, no hyphen at the end."""
    if len(slug) <= limit:
        return slug
    cut = slug[:limit]
    hyphen = cut.rfind("-")
    if hyphen >= limit // 2:
        cut = cut[:hyphen]
    return cut.rstrip("-")


def roster_prefix(roster_name: str) -> str:
    """The roster's part of its stack names: its name cut to PREFIX_MAX characters, at a hyphen
    if one is there ("cs101-fall-2025" -> "cs101"), starting with a letter as a stack name must
    ("2025-fall" -> "r2025")."""
    slug = slugify(roster_name) or "roster"
    if not slug[0].isalpha():
        slug = "r" + slug
    return _cut(slug, PREFIX_MAX)


def _student_slug(key: str) -> str:
    slug = slugify(key)
    if not slug:
        # A name in a script NFKD cannot spell in ASCII ("王伟"): its hash keeps it apart.
        return f"student-{key_hash(key)}"
    return slug if slug[0].isalpha() else "s" + slug


def _with_hash(prefix: str, slug: str, key: str, digits: int) -> str:
    room = STACK_NAME_MAX - len(prefix) - 1 - 1 - digits
    return f"{prefix}-{_cut(slug, room)}-{key_hash(key, digits)}"


def stack_name_for(roster_name: str, key: str) -> str:
    """The stack of the student identified by `key` (id, else name) in this roster:
    "<prefix>-<slug>", or, when that is too long, the slug cut and a hash of the whole key
    appended, so that two long names with the same beginning stay apart."""
    prefix = roster_prefix(roster_name)
    slug = _student_slug(key)
    name = f"{prefix}-{slug}"
    if len(name) > STACK_NAME_MAX:
        name = _with_hash(prefix, slug, key, HASH_DIGITS)
    return validate_stack_name(name)


def stack_names(roster_name: str, keys: list[str]) -> list[str]:
    """A distinct stack name for each key (keys are distinct). Names clash when two keys slug
    alike ("a_1" and "a-1"); then every student of the clash gets a hash of their key, so the
    names depend on who is in the roster, not on the order of its rows. Row order decides only
    if hashes of up to 12 digits still clash."""
    prefix = roster_prefix(roster_name)
    names = [stack_name_for(roster_name, key) for key in keys]
    for digits in (HASH_DIGITS, 6, 8, 12):
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        clashing = [i for i, name in enumerate(names) if seen[name] > 1]
        if not clashing:
            return names
        for i in clashing:
            names[i] = validate_stack_name(_with_hash(prefix, _student_slug(keys[i]), keys[i], digits))
    taken: set[str] = set()
    for i, name in enumerate(names):
        n = 2
        unique = name
        while unique in taken:
            unique = f"{name[:STACK_NAME_MAX - len(str(n)) - 1].rstrip('-')}-{n}"
            n += 1
        names[i] = validate_stack_name(unique)
        taken.add(unique)
    return names


def roster_name_from(path: str) -> str:
    """The roster's name from its file name: "CS 101 (Fall).csv" -> "cs-101-fall"."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name = _cut(slugify(stem), ROSTER_NAME_MAX)
    if not name:
        raise ConfigError(f"cannot make a roster name from the file name {os.path.basename(path)!r}",
                          hint="give the roster a name of lower-case letters, digits and hyphens")
    return name


def validate_roster_name(name: str) -> str:
    if not name or len(name) > ROSTER_NAME_MAX or not ROSTER_NAME_RE.fullmatch(name):
        suggestion = _cut(slugify(name or ""), ROSTER_NAME_MAX)
        raise ConfigError(
            f"invalid roster name {name!r}",
            hint=f"use at most {ROSTER_NAME_MAX} lower-case letters, digits and single hyphens"
                 + (f", e.g. {suggestion!r}" if suggestion and suggestion != name else ""))
    return name


# -- reading ----------------------------------------------------------------------------------------

def _column(header: str) -> str | None:
    return COLUMN_OF.get(re.sub(r"[\s_-]+", "", header.strip().lower()))


def _rows(text: str):
    """(line number, cells) of every row that is not blank or a comment. The line number is the
    row's first line (a quoted field may span several)."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    previous = 0
    for cells in reader:
        line = previous + 1
        previous = reader.line_num
        if not any(c.strip() for c in cells) or cells[0].strip().startswith("#"):
            continue
        yield line, cells


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"roster {path} does not exist",
                          hint="give the path of a CSV file with a header row such as name,id,email") from None
    except IsADirectoryError:
        raise ConfigError(f"roster {path} is a directory, not a CSV file") from None
    except OSError as e:
        raise ConfigError(f"cannot read roster {path}: {e.strerror}") from None
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts the file with a byte order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"roster {path} is not UTF-8 (byte {e.start} cannot be read)",
                          hint="save it as 'CSV UTF-8 (Comma delimited)' in Excel, or as UTF-8 CSV "
                               "in LibreOffice or Google Sheets") from None


def load_roster(path, *, name: str | None = None) -> Roster:
    """The roster in the CSV at `path`; a ConfigError listing every problem in it otherwise.
    `name`: the roster's name (the provision:roster tag); by default from the file name."""
    path = os.fspath(path)
    roster_name = validate_roster_name(name) if name is not None else roster_name_from(path)
    rows = _rows(_read_text(path))
    header = next(rows, None)
    if header is None:
        raise ConfigError(f"roster {path} is empty",
                          hint="the first line is a header such as name,id,email,region, then one line per student")
    header_line, header_cells = header
    problems: list[str] = []
    columns: dict[str, int] = {}
    for index, cell in enumerate(header_cells):
        column = _column(cell)
        if column is None:
            continue  # a column of the teacher's own (section, notes): not ours
        if column in columns:
            problems.append(f"line {header_line}: columns {header_cells[columns[column]].strip()!r} and "
                            f"{cell.strip()!r} both mean {column}")
        else:
            columns[column] = index
    if "name" not in columns and "id" not in columns:
        semicolons = any(";" in c or "\t" in c for c in header_cells)
        raise ConfigError(
            f"roster {path} has no name or id column (line {header_line} reads "
            f"{','.join(header_cells)!r})",
            hint="separate the columns with commas (Excel: 'CSV UTF-8 (Comma delimited)')" if semicolons else
            "the first line must be a header naming the columns: name (or student, full name), "
            "id (or student id), and optionally email and region")

    def cell(cells: list[str], column: str) -> str | None:
        index = columns.get(column)
        if index is None or index >= len(cells):
            return None
        return " ".join(cells[index].split()) or None

    # (line, name, id, email, region) of every well-formed row.
    entries: list[tuple[int, str | None, str | None, str | None, str | None]] = []
    first_of: dict[tuple[str, str], int] = {}
    for line, cells in rows:
        if len(cells) > len(header_cells):
            problems.append(f"line {line}: {len(cells)} values but the header has {len(header_cells)} "
                            f"columns (a value with a comma in it needs double quotes)")
            continue
        student_name, student_id, email, region = (cell(cells, c) for c in ("name", "id", "email", "region"))
        bad = False
        if not student_name and not student_id:
            problems.append(f"line {line}: no name and no id")
            bad = True
        # What becomes the stack's provision:student tag (Student.owner): the email, else the id,
        # else the name. Only that one reaches AWS: an apostrophe in a name next to an email is fine.
        owner = email or student_id or student_name
        owner_column = "email" if email else "id" if student_id else "name"
        if email is not None and not EMAIL_RE.fullmatch(email):
            problems.append(f"line {line}: invalid email {email!r}")
            bad = True
        elif owner and (problem := tag_problem(owner)):
            problems.append(f"line {line}: {owner_column} {shown(owner)} {problem} "
                            f"(it becomes the {TAG_STUDENT} tag)")
            bad = True
        if region is not None and not REGION_RE.fullmatch(region):
            problems.append(f"line {line}: invalid region {region!r} (a region looks like eu-west-1)")
            bad = True
        # The same student twice would get one stack for two rows: the same id, the same email,
        # or, for rows without an id, the same name.
        identities = []
        if student_id:
            identities.append(("id", student_id.casefold()))
        elif student_name:
            identities.append(("name", student_name.casefold()))
        if email:
            identities.append(("email", email.casefold()))
        for what, value in identities:
            if (what, value) in first_of:
                label = {"id": "student id", "name": "name", "email": "email"}[what]
                original = student_id if what == "id" else student_name if what == "name" else email
                problems.append(f"line {line}: {label} {original!r} is already on line {first_of[(what, value)]}")
                bad = True
            else:
                first_of[(what, value)] = line
        if not bad:
            entries.append((line, student_name, student_id, email, region))
    if not entries and not problems:
        raise ConfigError(f"roster {path} has no students after its header (line {header_line})",
                          hint="add one line per student under the header, e.g. Ada Lovelace,s1001,ada@example.edu")
    if problems:
        raise ConfigError(f"roster {path} has {len(problems)} problem(s):\n  " + "\n  ".join(problems),
                          hint="fix these lines and run again; nothing was created")
    keys = [student_id or student_name for _, student_name, student_id, _, _ in entries]
    names = stack_names(roster_name, keys)
    students = [Student(row=line, name=student_name, student_id=student_id, email=email, region=region, stack=stack)
                for (line, student_name, student_id, email, region), stack in zip(entries, names)]
    return Roster(name=roster_name, path=path, students=students)
