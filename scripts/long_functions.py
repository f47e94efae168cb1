"""`python -m scripts.long_functions --max 60`: lists the functions longer than --max lines; `make lint` runs it.

A function's length is its lines from `def` to its last line, signature and docstring included (decorators not);
a nested function counts in its outer function and on its own. A function may be longer with a reason: a comment
`# long: <reason>` on its `def` line(s), its decorators or the comment lines directly above them. An allowance on a
function that fits is reported as well, so reasons do not outlive the length they explain.

Exit 1 when a function outside the report-only paths is too long, has an empty reason or an allowance it no
longer needs; functions under report-only paths (`--report-only`, default REPORT_ONLY) are listed but never fail.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

COMMAND = "python -m scripts.long_functions"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAX = 60
# The production packages, plus the benchmark and these scripts.
PATHS = ("domain", "usecases", "store", "server", "client", "telemetry", "bench", "scripts")
# Listed, not failed (none today: every production function is short or says why it is not).
REPORT_ONLY: tuple[str, ...] = ()

_ALLOWANCE = re.compile(r"#\s*long:(.*)$")
_Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    name: str
    length: int
    reason: str | None  # None: no `# long:` comment; "": one without a reason
    report_only: bool

    def problem(self, limit: int) -> str:
        """What is wrong with the function, or "" when nothing is."""
        if self.reason == "":
            return f"is {self.length} lines; its `# long:` comment needs a reason"
        if self.length > limit and self.reason is None:
            return f"is {self.length} lines (max {limit})"
        if self.length <= limit and self.reason is not None:
            return f"is {self.length} lines (max {limit}) and no longer needs its `# long:` comment"
        return ""


def _comments(source: str) -> dict[int, str]:
    """Comment text by line number (real comments only, not `#` inside strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {token.start[0]: token.string for token in tokens if token.type == tokenize.COMMENT}


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, _Function]]:
    """Every function with its qualified name (`Class.method`, `outer.inner`), outer before inner."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _reason(node: _Function, lines: Sequence[str], comments: dict[int, str]) -> str | None:
    """The `# long:` reason given for the function ("" if empty), or None without one."""
    first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
    header_end = max(node.lineno, node.body[0].lineno - 1)
    indent = " " * node.col_offset
    above = first - 1
    while above >= 1 and lines[above - 1].startswith(indent + "#"):
        above -= 1
    for number in range(above + 1, header_end + 1):
        match = _ALLOWANCE.search(comments.get(number, ""))
        if match:
            return match.group(1).strip()
    return None


def _is_under(path: Path, prefixes: Sequence[Path]) -> bool:
    return any(path == prefix or prefix in path.parents for prefix in prefixes)


def scan_file(path: Path, shown_as: str, report_only: bool) -> list[Finding]:
    source = path.read_text()
    lines = source.splitlines()
    comments = _comments(source)
    findings: list[Finding] = []
    for name, node in _functions(ast.parse(source, filename=str(path))):
        end = node.end_lineno or node.lineno
        findings.append(
            Finding(shown_as, node.lineno, name, end - node.lineno + 1, _reason(node, lines, comments), report_only)
        )
    return findings


def _python_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.suffix == ".py":
            yield path


def scan(paths: Sequence[Path], report_only: Sequence[Path]) -> list[Finding]:
    findings: list[Finding] = []
    for path in _python_files(paths):
        resolved = path.resolve()
        shown = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)
        findings += scan_file(path, shown, _is_under(resolved, report_only))
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="*", type=Path, help=f"files or folders (default: {' '.join(PATHS)})")
    parser.add_argument(
        "--max", type=int, default=DEFAULT_MAX, help=f"most lines a function may have (default {DEFAULT_MAX})"
    )
    parser.add_argument(
        "--report-only",
        nargs="*",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"list but never fail functions under these (default: {' '.join(REPORT_ONLY)})",
    )
    args = parser.parse_args(argv)
    limit: int = args.max
    paths: list[Path] = args.paths or [ROOT / p for p in PATHS]
    report_only: list[Path] = [ROOT / p for p in REPORT_ONLY] if args.report_only is None else args.report_only
    failed = listed = 0
    for finding in scan(paths, [p.resolve() for p in report_only]):
        problem = finding.problem(limit)
        if not problem:
            continue
        listed += 1
        failed += not finding.report_only
        suffix = "  [report only]" if finding.report_only else ""
        print(f"{finding.path}:{finding.line}: {finding.name} {problem}{suffix}")
    if listed:
        print(f"{listed} function(s) listed, {failed} failing (add `# long: <reason>` above one that must stay long)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
