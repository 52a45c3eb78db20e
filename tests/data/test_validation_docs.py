"""docs/validation.md must list every validator code, with its current severity and default hint.

The table between the ``CODES TABLE`` markers is generated from ``groot_ft.data.validate.CODES``. When a code is
added, removed or changed, regenerate it with

    .venv/bin/python tests/data/test_validation_docs.py --write
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from groot_ft.data.validate import codes as validate  # the CODES literal lives in validate/codes.py

DOC = Path(__file__).resolve().parents[2] / "docs" / "validation.md"
START = "<!-- CODES TABLE START -->"
END = "<!-- CODES TABLE END -->"
_SECTION = re.compile(r"^\s*#\s*---\s*(?P<title>.+?)\s*-*\s*$")
_KEY = re.compile(r'^\s*"(?P<code>[A-Z0-9_]+)"\s*:')


def code_categories() -> dict[str, str]:
    """code -> the ``# --- title ---`` comment above it inside the CODES literal in validate.py."""
    source = inspect.getsource(validate).splitlines()
    start = next(i for i, line in enumerate(source) if re.match(r"^CODES\s*:", line))
    out: dict[str, str] = {}
    title = ""
    for line in source[start + 1 :]:
        if line.startswith("}"):
            break
        m = _SECTION.match(line)
        if m:
            title = m.group("title")
            continue
        m = _KEY.match(line)
        if m and m.group("code") in validate.CODES:
            out[m.group("code")] = title
    return out


def _markdown_text(text: str) -> str:
    """Plain text safe inside a GitHub markdown table cell (no cell breaks, tags or emphasis)."""
    for char, escaped in (("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*")):
        text = text.replace(char, escaped)
    return text


def render_codes_table() -> str:
    categories = code_categories()
    lines = ["| code | severity | category | default hint |", "|---|---|---|---|"]
    for code, (severity, hint) in validate.CODES.items():
        sev = "**E**" if severity == validate.ERROR else "W"
        hint = _markdown_text(hint)
        lines.append(f"| `{code}` | {sev} | {categories.get(code, '')} | {hint} |")
    return "\n".join(lines)


def doc_table(text: str) -> str:
    assert START in text and END in text, f"{DOC} lacks the {START} / {END} markers"
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def test_every_code_is_documented():
    text = DOC.read_text(encoding="utf-8")
    table = doc_table(text)
    missing = [code for code in validate.CODES if f"| `{code}` |" not in table]
    assert not missing, f"codes missing from {DOC.name}: {missing}; regenerate: python {Path(__file__).name} --write"
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    stale = sorted(documented - set(validate.CODES))
    assert not stale, f"{DOC.name} documents codes the validator no longer has: {stale}"


def test_codes_table_is_current():
    table = doc_table(DOC.read_text(encoding="utf-8"))
    assert table == render_codes_table(), (
        f"the codes table in {DOC} is stale (severity or hint changed); regenerate it with "
        f"`.venv/bin/python tests/data/test_validation_docs.py --write`"
    )


def test_every_code_has_a_category():
    categories = code_categories()
    assert set(categories) == set(validate.CODES)
    assert all(categories.values())


def _write() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{render_codes_table()}\n{END}{tail}", encoding="utf-8")
    print(f"wrote the codes table ({len(validate.CODES)} codes) into {DOC}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/data/test_validation_docs.py --write")
    _write()
