"""The class roster: the CSV forms teachers export, every problem reported at once with its line,
and stack names that are valid, unique and the same however the roster is sorted."""

from __future__ import annotations

import hashlib
import random
import string

import pytest

from provisioner.shape.config import STACK_NAME_MAX, validate_stack_name
from provisioner.engine.errors import ConfigError
from provisioner.commands.roster import (load_roster, roster_name_from, roster_prefix, slugify, stack_name_for,
                                stack_names, validate_roster_name)


def write(tmp_path, text: str, name: str = "cs101.csv", encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def problems(excinfo) -> list[str]:
    return [line.strip() for line in excinfo.value.message.splitlines()[1:]]


# -- reading --------------------------------------------------------------------------------------

def test_a_spreadsheet_export_with_bom_aliases_quotes_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, "\ufeffFull Name, Student_ID ,E-Mail,Region,Section\r\n"
                           "# exported from the LMS\r\n"
                           "\r\n"
                           '"Núñez, José",A-17,jose@example.edu,,2\r\n'
                           "Ada Lovelace,,ada@example.edu,eu-west-1,1\r\n"
                           ",,,,\r\n"
                           "Grace Hopper,G-3,,,1\r\n")
    roster = load_roster(path)

    assert roster.name == "cs101" and roster.path == path
    jose, ada, grace = roster.students
    assert (jose.row, jose.name, jose.student_id, jose.email, jose.region) == (
        4, "Núñez, José", "A-17", "jose@example.edu", None)
    assert (ada.row, ada.student_id, ada.region) == (5, None, "eu-west-1")
    assert grace.row == 7
    # Tables show the name; the student tag says whom the stack belongs to.
    assert (jose.label, jose.owner) == ("Núñez, José", "jose@example.edu")
    assert (grace.label, grace.owner) == ("Grace Hopper", "G-3")
    assert [s.stack for s in roster.students] == ["cs101-a-17", "cs101-ada-lovelace", "cs101-g-3"]


def test_id_only_and_email_only_labels(tmp_path):
    roster = load_roster(write(tmp_path, "id,owner email\n4711,\n4712,b@example.org\n"))
    first, second = roster.students
    assert (first.label, first.owner, first.stack) == ("4711", "4711", "cs101-s4711")
    assert (second.label, second.owner) == ("4712", "b@example.org")


def test_a_quoted_value_over_two_lines_keeps_the_line_numbers_right(tmp_path):
    path = write(tmp_path, 'name,email\n"Ada\nLovelace",ada@example.edu\nGrace Hopper,bad-address\n')
    with pytest.raises(ConfigError) as raised:
        load_roster(path)
    assert problems(raised) == ["line 4: invalid email 'bad-address'"]


def test_every_problem_is_listed_with_its_line(tmp_path):
    path = write(tmp_path, "name,id,email,region\n"
                           "Ada Lovelace,1,ada@example.edu,eu-west-1\n"
                           ",,someone@example.edu,\n"                 # 3: neither name nor id
                           "Alan Turing,2,alan(at)example.edu,\n"     # 4: email
                           "Grace Hopper,3,,Frankfurt\n"              # 5: region
                           "Ada L.,1,,\n"                             # 6: id of line 2
                           "Edsger Dijkstra,4,ADA@example.edu,\n"     # 7: email of line 2
                           "Barbara Liskov,5,bl@example.edu,eu-west-1,extra\n")  # 8: a comma unquoted
    with pytest.raises(ConfigError) as raised:
        load_roster(path)
    assert raised.value.exit_code == 2
    assert problems(raised) == [
        "line 3: no name and no id",
        "line 4: invalid email 'alan(at)example.edu'",
        "line 5: invalid region 'Frankfurt' (a region looks like eu-west-1)",
        "line 6: student id '1' is already on line 2",
        "line 7: email 'ADA@example.edu' is already on line 2",
        "line 8: 5 values but the header has 4 columns (a value with a comma in it needs double quotes)",
    ]
    assert "7 problem(s)" not in raised.value.message and "6 problem(s)" in raised.value.message


def test_the_same_name_twice_is_a_duplicate_only_without_ids(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_roster(write(tmp_path, "name\nAda Lovelace\nada  lovelace\n"))
    assert problems(raised) == ["line 3: name 'ada lovelace' is already on line 2"]
    roster = load_roster(write(tmp_path, "name,id\nAda Lovelace,1\nAda Lovelace,2\n"))
    assert [s.stack for s in roster.students] == ["cs101-s1", "cs101-s2"]


@pytest.mark.parametrize("text, expected", [
    ("", "is empty"),
    ("\n\n# nothing yet\n", "is empty"),
    ("name,id,email\n", r"has no students after its header \(line 1\)"),
    ("email,region\na@example.org,eu-west-1\n", "no name or id column"),
    ("Ada Lovelace,1,ada@example.edu\n", "no name or id column"),
])
def test_roster_without_students_or_header(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected) as raised:
        load_roster(write(tmp_path, text))
    assert raised.value.hint


def test_semicolons_get_a_hint_about_commas(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_roster(write(tmp_path, "name;id\nAda;1\n"))
    assert "comma" in raised.value.hint.lower()


def test_two_columns_meaning_the_same(tmp_path):
    with pytest.raises(ConfigError, match="columns 'name' and 'Student' both mean name"):
        load_roster(write(tmp_path, "name,Student,id\nAda,Ada L,1\n"))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_roster(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="not UTF-8") as raised:
        load_roster(write(tmp_path, "name\nJosé\n", encoding="latin-1"))
    assert "UTF-8" in raised.value.hint


def test_regions_groups_students_with_the_default_for_rows_without_one(tmp_path):
    roster = load_roster(write(tmp_path, "name,region\nA,eu-west-1\nB,\nC,us-west-2\nD,eu-west-1\n"))
    groups = roster.regions("us-east-1")
    assert list(groups) == ["eu-west-1", "us-east-1", "us-west-2"]
    assert [s.name for s in groups["eu-west-1"]] == ["A", "D"]
    assert [s.name for s in groups["us-east-1"]] == ["B"]


# -- the roster's name ----------------------------------------------------------------------------

def test_the_roster_name_comes_from_the_file_name_or_is_given(tmp_path):
    assert roster_name_from("/x/CS 101 (Fall 2025).csv") == "cs-101-fall-2025"
    assert len(roster_name_from("/x/" + "introduction-to-cloud-computing-section-b.csv")) <= 32
    path = write(tmp_path, "name\nAda\n", name="Intro Cloud.CSV")
    assert load_roster(path).name == "intro-cloud"
    assert load_roster(path, name="lab-7").name == "lab-7"
    with pytest.raises(ConfigError, match="invalid roster name") as raised:
        load_roster(path, name="Lab 7")
    assert "'lab-7'" in raised.value.hint
    with pytest.raises(ConfigError):
        validate_roster_name("x" * 33)
    with pytest.raises(ConfigError, match="cannot make a roster name"):
        roster_name_from("/x/???.csv")


@pytest.mark.parametrize("roster, prefix", [
    ("cs101", "cs101"), ("cs101-fall-2025", "cs101"), ("introduction", "introduc"),
    ("ab-cd-efgh", "ab-cd"), ("2025-fall", "r2025"), ("a-b-c-d-e", "a-b-c-d"),
])
def test_the_roster_prefix_is_short_and_cut_at_a_hyphen(roster, prefix):
    assert roster_prefix(roster) == prefix


# -- stack names ----------------------------------------------------------------------------------

def test_accents_are_spelled_in_ascii():
    assert slugify("José Núñez") == "jose-nunez"
    assert stack_name_for("cs101", "José Núñez") == "cs101-jose-nunez"
    assert stack_name_for("cs101", "  Zoë O'Brien-Smith ") == "cs101-zoe-o-brien-smith"
    assert stack_name_for("cs101", "12345") == "cs101-s12345"


def test_a_name_without_latin_letters_gets_its_hash():
    name = stack_name_for("cs101", "王伟")
    assert name == f"cs101-student-{hashlib.sha256('王伟'.encode()).hexdigest()[:4]}"
    assert name != stack_name_for("cs101", "李娜")


def test_a_long_name_is_cut_and_gets_a_hash_of_the_whole_key():
    key = "Maximiliane Alexandra von Schwarzenberg"
    name = stack_name_for("cs101-fall-2025", key)
    assert len(name) <= STACK_NAME_MAX
    assert name == f"cs101-maximiliane-{hashlib.sha256(key.encode()).hexdigest()[:4]}"
    # The same beginning, another student: another stack.
    assert stack_name_for("cs101-fall-2025", key + " II") != name


def test_keys_that_slug_alike_all_get_a_hash_whatever_the_order():
    keys = ["a_1", "a-1", "A.1", "b-2"]
    names = stack_names("cs101", keys)
    assert len(set(names)) == 4
    assert names[3] == "cs101-b-2"          # not in the clash: left as it is
    for key, name in zip(keys[:3], names[:3]):
        assert name == f"cs101-a-1-{hashlib.sha256(key.encode()).hexdigest()[:4]}"
    reordered = stack_names("cs101", list(reversed(keys)))
    assert dict(zip(keys, names)) == dict(zip(reversed(keys), reordered))


def test_a_hashed_name_that_meets_a_natural_one_is_told_apart(tmp_path):
    # "x" is too long and gets cut plus its hash; another student's id is exactly that name.
    long_key = "averyveryverylongstudentidentifier"
    hashed = stack_name_for("cs101", long_key)
    natural_key = hashed[len("cs101-"):]
    assert stack_name_for("cs101", natural_key) == hashed
    names = stack_names("cs101", [long_key, natural_key])
    assert len(set(names)) == 2 and all(validate_stack_name(n) for n in names)
    assert names == list(reversed(stack_names("cs101", [natural_key, long_key])))


def random_key(rng: random.Random) -> str:
    # Punctuation a tag value may hold ("+", not "'"): these keys are ids, and an id becomes the
    # provision:student tag, which AWS refuses with an apostrophe in it.
    alphabet = string.ascii_letters + string.digits + " -_.+éüñçøÅßłž王" + "0123456789"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))).strip() or "x"


@pytest.mark.parametrize("roster", ["cs101", "introduction-to-cloud", "2025-fall-section-b", "a"])
def test_derived_names_are_valid_unique_and_independent_of_row_order(tmp_path, roster):
    rng = random.Random(f"roster-{roster}")
    keys = {random_key(rng).casefold() for _ in range(300)}
    # Look-alikes that slug the same ("ab cd", "ab_cd", "ab.cd"): clashes to tell apart.
    keys |= {k.replace(" ", sep) for k in list(keys)[:60] for sep in "_."}
    keys = sorted(keys)
    rows = [f'"{key}"' for key in keys]
    first = load_roster(write(tmp_path, "id\n" + "\n".join(rows) + "\n", name="a.csv"), name=roster)
    rng.shuffle(rows)
    second = load_roster(write(tmp_path, "id\n" + "\n".join(rows) + "\n", name="b.csv"), name=roster)

    names = {s.student_id: s.stack for s in first.students}
    assert len(set(names.values())) == len(names) == len(keys)
    for stack in names.values():
        assert validate_stack_name(stack) == stack
        assert stack.startswith(roster_prefix(roster) + "-")
    assert {s.student_id: s.stack for s in second.students} == names


def test_adding_a_student_leaves_the_others_names_alone(tmp_path):
    base = load_roster(write(tmp_path, "name,id\nAda,1\nGrace,2\nAlan,3\n"))
    more = load_roster(write(tmp_path, "name,id\nZoe,0\nAda,1\nGrace,2\nAlan,3\n"))
    before = {s.student_id: s.stack for s in base.students}
    after = {s.student_id: s.stack for s in more.students}
    assert before.items() <= after.items() and len(after) == 4
