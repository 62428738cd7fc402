"""Write each role README's variable table from the role's meta/argument_specs.yml.

The table sits between two marker comments in roles/<role>/README.md; everything else in
the README is written by hand. `make role-docs` rewrites the tables; the unit tests
(tests/unit/test_role_specs.py) fail when a table is not what this script would write,
so a changed argument_specs.yml cannot leave its README behind.

    python tools/role_tables.py           # rewrite the tables
    python tools/role_tables.py --check   # exit 1 and name the READMEs that are out of date
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN variables: generated from meta/argument_specs.yml by tools/role_tables.py; do not edit -->"
END = "<!-- END variables -->"


def roles() -> list[Path]:
    return sorted(p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(option: dict) -> str:
    kind = option.get("type", "str")
    return f"{kind} of {option['elements']}" if option.get("elements") else kind


def _default(option: dict, fallback: dict, name: str) -> str:
    """The spec's default; a templated default ('{{ inventory_hostname }}') is only in defaults/main.yml."""
    if option.get("required"):
        return "**required**"
    if "default" in option:
        value = option["default"]
    elif name in fallback:
        value = fallback[name]
    else:
        return "(none)"
    return "`" + _cell(json.dumps(value, ensure_ascii=False)) + "`"


# ansible-doc markup to Markdown: C(code), O(option), V(value), I(italic), B(bold), U(url), L(text,url).
_MARKUP = [
    (re.compile(r"\b[CVO]\(([^)]*)\)"), r"`\1`"),
    (re.compile(r"\bI\(([^)]*)\)"), r"*\1*"),
    (re.compile(r"\bB\(([^)]*)\)"), r"**\1**"),
    (re.compile(r"\bU\(([^)]*)\)"), r"<\1>"),
    (re.compile(r"\bL\(([^,)]*),\s*([^)]*)\)"), r"[\1](\2)"),
]


def _description(option: dict) -> str:
    text = option.get("description", "")
    text = " ".join(text) if isinstance(text, list) else str(text)
    for pattern, markdown in _MARKUP:
        text = pattern.sub(markdown, text)
    if option.get("choices"):
        text += " One of " + ", ".join(f"`{c}`" for c in option["choices"]) + "."
    return _cell(text)


def table(role: Path) -> str:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text(encoding="utf-8")) or {}) if defaults_file.is_file() else {}
    rows = [BEGIN, "| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in specs["argument_specs"]["main"]["options"].items():
        rows.append(f"| `{name}` | {_type(option)} | {_default(option, defaults, name)} | {_description(option)} |")
    rows.append(END)
    return "\n".join(rows)


def render(role: Path) -> str:
    """The role's README with its table as this script writes it."""
    text = (role / "README.md").read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{role / 'README.md'}: needs exactly one table between the markers {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + table(role) + tail


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for role in roles():
        want = render(role)
        readme = role / "README.md"
        if readme.read_text(encoding="utf-8") != want:
            stale.append(readme)
            if not check:
                readme.write_text(want, encoding="utf-8")
    if check and stale:
        print("out of date (run `make role-docs`): " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
