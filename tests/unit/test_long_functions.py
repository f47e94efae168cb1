"""scripts.long_functions: which functions are too long, the `# long: <reason>` allowance, report-only paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.long_functions import main, scan


def function(name: str, lines: int, *, indent: str = "", head: str = "") -> str:
    """A function `lines` long, `def` line included, after `head` (comments, decorators, each ending in a newline)."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
    return f"{head}{indent}def {name}() -> None:\n{body}"


def write(tmp_path: Path, source: str, name: str = "module.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[str]]:
    code = main(["--max", "10", *(str(a) for a in args), "--report-only"])  # nothing report-only
    return code, capsys.readouterr().out.splitlines()


def test_a_function_over_the_limit_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, function("short", 10) + "\n\n" + function("long", 11))
    code, out = run(capsys, path)
    assert code == 1
    assert out[0].endswith("module.py:13: long is 11 lines (max 10)")
    assert len(out) == 2 and out[1].startswith("1 function(s) listed, 1 failing")


@pytest.mark.parametrize(
    "head",
    [
        "# long: one table, read top to bottom\n",
        "# long: one table, read top to bottom\n# (more on the table)\n@staticmethod\n",
        "@staticmethod  # long: one table, read top to bottom\n",
    ],
)
def test_a_reason_allows_a_long_function(head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, function("table", 30, head=head))
    assert run(capsys, path) == (0, [])


def test_a_reason_on_the_def_line_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = function("table", 30).replace("-> None:", "-> None:  # long: one table", 1)
    assert run(capsys, write(tmp_path, source)) == (0, [])


def test_an_empty_reason_or_one_no_longer_needed_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = function("bare", 30, head="# long:\n") + "\n\n" + function("fits", 5, head="# long: it was long once\n")
    code, out = run(capsys, write(tmp_path, source))
    assert code == 1
    assert "bare is 30 lines; its `# long:` comment needs a reason" in out[0]
    assert "fits is 5 lines (max 10) and no longer needs its `# long:` comment" in out[1]


def test_only_comments_count_and_only_the_functions_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = (
        'TEXT = """\n# long: inside a string\n"""\n'
        + function("after_string", 11)
        + "\n\n# long: a comment block of its own\n\n"
        + function("after_blank_line", 11)
        + "\n\nclass Table:\n    x = 1\n# long: not at the method's indentation\n"
        + function("method", 11, indent="    ")
    )
    code, out = run(capsys, write(tmp_path, source))
    assert code == 1
    assert [line.split(": ", 1)[1] for line in out[:3]] == [
        "after_string is 11 lines (max 10)",
        "after_blank_line is 11 lines (max 10)",
        "Table.method is 11 lines (max 10)",
    ]


def test_nested_functions_count_in_their_outer_function_and_on_their_own(tmp_path: Path) -> None:
    source = "def outer() -> None:\n" + function("inner", 12, indent="    ") + "    inner()\n"
    findings = {f.name: f.length for f in scan([write(tmp_path, source)], [])}
    assert findings == {"outer": 14, "outer.inner": 12}


def test_report_only_paths_are_listed_but_never_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "theirs").mkdir()
    mine = write(tmp_path, function("fine", 3), "mine.py")
    theirs = write(tmp_path, function("long", 11), "theirs/module.py")
    code = main(["--max", "10", str(mine), str(tmp_path / "theirs"), "--report-only", str(tmp_path / "theirs")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].endswith(f"{theirs}:1: long is 11 lines (max 10)  [report only]")
    assert out[1].startswith("1 function(s) listed, 0 failing")


def test_the_packages_keep_to_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """What `make lint` runs: paths outside REPORT_ONLY have no function over 60 lines without a reason."""
    code = main(["--max", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
