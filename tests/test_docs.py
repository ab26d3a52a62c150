"""The documentation says what the code does: the reference is written from the code."""

from pathlib import Path

from runners.cli.reference import reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_reference_is_what_the_code_says():
    """docs/reference.md lists every command-line option (click) and every spec setting with its default and
    allowed values (the pydantic schema, the registries): a changed option or setting fails here until the file
    is written again."""
    text = reference()
    assert "`--tracking-uri`" in text and "`run.report_every`" in text and "`_nerf`" in text
    assert (ROOT / "docs" / "reference.md").read_text() == text, (
        "docs/reference.md is out of date: python -m runners.cli.reference > docs/reference.md")


def _test_names(path: Path) -> set:
    import ast

    return {node.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_fault_row_names_a_test_that_exists():
    """docs/faults.md: every row of every table has a test column naming at least one test, and every test the page
    names (``tests/x.py::test_name``) exists."""
    import re

    text = (ROOT / "docs" / "faults.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", text)
    assert len(named) > 20
    for file, name in named:
        assert name in _test_names(ROOT / file), f"docs/faults.md names {file}::{name}, which does not exist"
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    headers = [line for line in rows if line.rstrip().endswith("| test |")]
    body = [line for line in rows if line not in headers and not set(line) <= set("|- ")]
    assert len(headers) == 4, headers  # the kill windows, the signals, crashes and services, the bounds
    for line in body:
        last = line.rstrip().removesuffix("|").rsplit("|", 1)[-1]
        assert re.search(r"`tests/[\w/]+\.py::test_\w+`", last), f"a row of docs/faults.md names no test: {line}"
