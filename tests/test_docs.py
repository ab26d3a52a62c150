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
