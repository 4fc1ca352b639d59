"""`fleet report` writes what a roster and AWS say about students into files that a spreadsheet
or a Markdown renderer opens: no cell may become a formula, a second cell, a link or a script."""

from __future__ import annotations

import csv
import io

import pytest

from provisioner.commands.fleet import csv_cell, markdown_cell

from test_cli import cli, state_dir  # noqa: F401  (fixtures)

FORMULAS = ['=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+2", "\r=1+2"]


@pytest.mark.parametrize("value", FORMULAS)
def test_a_csv_cell_that_a_spreadsheet_would_evaluate_is_made_text(value):
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Ada Lovelace", "ada@example.edu", "https://x.elb.amazonaws.com", "", 1.25])
def test_other_csv_cells_are_written_as_they_are(value):
    assert csv_cell(value) == value


@pytest.mark.parametrize("value, shown", [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("a | b", "a \\| b"),
    ("two\nlines", "two lines"),
    ("[click](http://evil)", "\\[click\\](http://evil)"),
    ("*bold* _it_ `code` ~~x~~", "\\*bold\\* \\_it\\_ \\`code\\` \\~\\~x\\~\\~"),
    ("Tom & Jerry \\", "Tom &amp; Jerry \\\\"),
    ('<img src=x onerror="alert(1)">', "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"),
])
def test_a_markdown_cell_cannot_split_the_row_or_add_markup(value, shown):
    assert markdown_cell(value) == shown


def test_the_report_neutralises_hostile_names_in_both_formats(moto_aws, tmp_path, state_dir):
    # Names a roster can hold (every character is one AWS takes in a tag), yet formulas to a
    # spreadsheet and markup to Markdown.
    roster = tmp_path / "cs101.csv"
    roster.write_text("name,email\n=1+2,a@example.edu\n@SUM+1,b@example.edu\n-3+4,c@example.edu\n"
                      "+5,d@example.edu\nsnake_case_name,e_f@example.edu\n")
    report = cli("fleet", "report", "--roster", str(roster), "--format", "csv", state_dir=state_dir)
    assert report.exit_code == 0, report.output
    students = [r["student"] for r in csv.DictReader(io.StringIO(report.stdout))]
    assert sorted(students) == sorted(["'=1+2", "'@SUM+1", "'-3+4", "'+5", "snake_case_name"])

    markdown = cli("fleet", "report", "--roster", str(roster), state_dir=state_dir)
    assert markdown.exit_code == 0, markdown.output
    assert "| snake\\_case\\_name | e\\_f@example.edu |" in markdown.stdout
    table = [line for line in markdown.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5 and all(line.count(" | ") == 8 for line in table[2:])
