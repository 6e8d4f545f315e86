"""`reft grade` end to end through the real CLI entry point, on tiny temporary files."""

from __future__ import annotations

import json

import pytest

from reft import cli
from reft.data.prompts import ANSWER_TRIGGER

T = ANSWER_TRIGGER


REGISTERED = list(cli.COMMAND_MODULES)  # read before the fixture below narrows it


@pytest.fixture(autouse=True)
def only_grade(monkeypatch):
    """Build the real parser with the grade command alone, so other commands' imports do not matter."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["grade"])


def test_grade_is_registered():
    assert "grade" in REGISTERED


def write_jsonl(path, rows):
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    )
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def grade(tmp_path, rows, *options):
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    target = tmp_path / "out" / "graded.jsonl"
    code = cli.main(["grade", "--input", str(source), "--output", str(target), *options])
    return code, (read_jsonl(target) if target.exists() else None)


NL_ROWS = [
    {"id": "q1", "question": "ignored", "completion": f"3 + 4 = 7{T}7", "answer": "7"},
    {"id": "q2", "completion": "so the answer is $1,000.", "answer": "1,000"},
    {"id": 3, "completion": f"x{T}8", "answer": "7.0"},
    {"completion": "I do not know", "answer": "5"},
]


def test_nl_lenient_by_default(tmp_path, capsys):
    code, rows = grade(tmp_path, NL_ROWS, "--task", "gsm8k", "--cot", "nl")
    assert code == 0
    assert rows == [
        {"id": "q1", "extracted": "7", "correct": True, "reward": 1.0, "error": None},
        {"id": "q2", "extracted": "1000", "correct": True, "reward": 1.0, "error": None},
        {"id": 3, "extracted": "8", "correct": False, "reward": 0.1, "error": None},
        {"id": None, "extracted": None, "correct": False, "reward": 0.0, "error": "no_answer"},
    ]
    out = capsys.readouterr().out
    assert "lenient extraction" in out and "50.00%  (2/4)" in out and "75.00%  (3/4)" in out
    assert "no_answer 1" in out and "completions/s" in out


def test_nl_strict_is_the_training_rule(tmp_path):
    code, rows = grade(tmp_path, NL_ROWS, "--task", "gsm8k", "--cot", "nl", "--strict")
    assert code == 0
    assert [row["extracted"] for row in rows] == ["7", None, "8", None], (
        "strict ignores 'the answer is'"
    )


def test_partial_reward_option(tmp_path):
    _, rows = grade(tmp_path, NL_ROWS, "--task", "svamp", "--cot", "nl", "--partial-reward", "0")
    assert rows[2]["reward"] == 0.0


def test_multiple_choice_task_and_inference(tmp_path, capsys):
    rows = [
        {"id": 1, "completion": "The answer is (B).", "answer": "b"},
        {"id": 2, "completion": f"x{T}c", "answer": "d"},
    ]
    _, explicit = grade(tmp_path, rows, "--task", "mathqa", "--cot", "nl")
    assert [(r["extracted"], r["correct"]) for r in explicit] == [("b", True), ("c", False)]
    _, inferred = grade(tmp_path, rows, "--cot", "nl")
    assert inferred == explicit
    assert "task inferred (multiple_choice)" in capsys.readouterr().out


def test_python_programs(tmp_path, capsys):
    rows = [
        {"id": "full", "completion": "def solution():\n    return 6 * 7", "answer": "42"},
        {"id": "body", "completion": "    a = 40\n    return a + 2", "answer": "42"},
        {"id": "wrong", "completion": "def solution():\n    return 41", "answer": "42"},
        {
            "id": "loop",
            "completion": "def solution():\n    while True:\n        pass",
            "answer": "42",
        },
        {"id": "raise", "completion": "def solution():\n    return 1 / 0", "answer": "42"},
    ]
    code, out_rows = grade(
        tmp_path, rows, "--task", "synth", "--cot", "python", "--workers", "1", "--timeout", "0.5"
    )
    assert code == 0
    assert [(r["id"], r["correct"], r["reward"], r["error"]) for r in out_rows] == [
        ("full", True, 1.0, None),
        ("body", True, 1.0, None),
        ("wrong", False, 0.1, None),
        ("loop", False, 0.0, "timeout"),
        ("raise", False, 0.0, "exception"),
    ]
    out = capsys.readouterr().out
    assert "programs/s" in out and "executed" in out and "timeout 1" in out and "exception 1" in out


@pytest.mark.parametrize(
    ("rows", "where", "reason"),
    [
        (
            ['{"completion": "x", "answer": "1"}', "{not json"],
            "in.jsonl:line 2",
            "malformed JSON line",
        ),
        ([{"answer": "1"}], "in.jsonl:line 1: field 'completion'", "missing completion"),
        ([{"completion": "x"}], "in.jsonl:line 1: field 'answer'", "missing answer"),
        (
            [{"completion": ["x"], "answer": "1"}],
            "line 1: field 'completion'",
            "completion is not a string",
        ),
        (["[1, 2]"], "in.jsonl:line 1", "a line that is not an object"),
        (
            [{"completion": "x", "answer": "1"}, "", {"completion": "y", "answer": "seven"}],
            "in.jsonl:line 3: field 'answer'",
            "gold not a number for a numeric task (blank lines still count)",
        ),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, capsys, rows, where, reason):
    code, out_rows = grade(tmp_path, rows, "--task", "gsm8k", "--cot", "nl")
    assert code == 2, reason
    assert out_rows is None, "nothing is written for bad input"
    assert where in capsys.readouterr().err, reason


def test_unicode_line_separator_inside_a_string(tmp_path):
    row = '{"id": 1, "completion": "a\u2028b The answer is 4", "answer": "4"}'
    assert "\u2028" in row
    _, rows = grade(tmp_path, [row], "--task", "gsm8k", "--cot", "nl")
    assert rows == [{"id": 1, "extracted": "4", "correct": True, "reward": 1.0, "error": None}]


def test_not_utf8(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"completion": "\xff", "answer": "1"}\n')
    code = cli.main(
        ["grade", "--cot", "nl", "--input", str(source), "--output", str(tmp_path / "o")]
    )
    assert code == 2 and "not UTF-8" in capsys.readouterr().err


def test_missing_input_file(tmp_path, capsys):
    code = cli.main(
        [
            "grade",
            "--cot",
            "nl",
            "--input",
            str(tmp_path / "nope.jsonl"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "nope.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        ["--timeout", "0"],
        ["--workers", "0"],
        ["--partial-reward", "2"],
        ["--task", "unknown"],
        ["--cot", "latex"],
    ],
)
def test_bad_options_exit_2(tmp_path, options):
    source = write_jsonl(tmp_path / "in.jsonl", NL_ROWS)
    argv = [
        "grade",
        "--cot",
        "nl",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "o"),
        *options,
    ]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
