"""The collection's documentation site (`make docs`): prepare the Sphinx build, check what it built.

    python tools/docs_site.py prepare build/docs/site   # after antsibull-docs sphinx-init
    python tools/docs_site.py check build/docs/html      # after sphinx-build

prepare: the pages antsibull-docs writes reference two labels of the Ansible docsite
(`common_return_values` on every module page, `ansible_configuration_settings` on the environment
variables page), which Sphinx resolves through intersphinx from docs.ansible.com. The build must
not need the network (nor fail without it: it runs with -W), so conf.py gets one intersphinx entry
read from a local inventory that holds exactly those labels, at their docs.ansible.com addresses. A
page that references any other outside label still fails the build, naming it.

check: the collection index links every public plugin and every role; each plugin page shows every
option and return value of its DOCUMENTATION and RETURN, each role page every entry point and its
every option from meta/argument_specs.yml; the Guides page names the Markdown guides the tarball
ships, all of them and no other. Exit 1 naming what is missing.
"""

from __future__ import annotations

import ast
import re
import sys
import zlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/devel/"
# name, role, page#anchor, title: the Ansible docsite labels antsibull-docs' pages reference.
ANSIBLE_LABELS = [
    ("ansible_configuration_settings", "std:label", "reference_appendices/config.html#ansible-configuration-settings",
     "Ansible Configuration Settings"),
    ("common_return_values", "std:label", "reference_appendices/common_return_values.html#common-return-values",
     "Return Values"),
]
CONF_OVERRIDE = """
# Added by tools/docs_site.py (make docs): the Ansible docsite's labels from a local inventory, so
# the build never reaches the network; no other outside inventory.
intersphinx_mapping = {{'ansible_devel': ({url!r}, '../ansible_devel.inv')}}
"""
PLUGIN_TYPES = {"filter": "filter", "modules": "module"}


def prepare(site: Path) -> None:
    body = "".join(f"{name} {role} -1 {uri} {title}\n" for name, role, uri, title in ANSIBLE_LABELS)
    header = "# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n" \
             "# The remainder of this file is compressed using zlib.\n"
    (site / "ansible_devel.inv").write_bytes(header.encode() + zlib.compress(body.encode()))
    with (site / "conf.py").open("a") as conf:
        conf.write(CONF_OVERRIDE.format(url=ANSIBLE_DOCS))


def _doc_strings(path: Path) -> dict:
    """DOCUMENTATION and RETURN of a plugin, read without importing it."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "RETURN"):
                    found[target.id] = yaml.safe_load(node.value.value) or {}
    return found


def _anchors(prefix: str, options: dict, key: str) -> list[str]:
    """The ids antsibull-docs gives an option tree: <prefix><name>, <prefix><name>/<sub>, ..."""
    ids = []
    for name, spec in (options or {}).items():
        ids.append(f'id="{prefix}{name}"')
        ids += _anchors(f"{prefix}{name}/", (spec or {}).get(key), key)
    return ids


def _shipped_guides() -> list[str]:
    ignored = set(yaml.safe_load((ROOT / "galaxy.yml").read_text()).get("build_ignore", []))
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")
                  if p.relative_to(ROOT).as_posix() not in ignored)


def check(html: Path) -> list[str]:
    index = html / "index.html"
    if not index.is_file():
        return [f"{index} was not built"]
    index_text = index.read_text()
    problems = []
    pages = {}
    for directory, kind in PLUGIN_TYPES.items():
        for path in sorted((ROOT / "plugins" / directory).glob("*.py")):
            if not path.name.startswith("_"):
                docs = _doc_strings(path)
                expected = _anchors("parameter-", docs.get("DOCUMENTATION", {}).get("options"), "suboptions")
                expected += _anchors("return-", docs.get("RETURN"), "contains")
                pages[f"{path.stem}_{kind}.html"] = expected
    for spec_file in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        role = spec_file.parents[1].name
        expected = []
        for entry, spec in yaml.safe_load(spec_file.read_text())["argument_specs"].items():
            expected.append(f'-role-entrypoint-{entry}"')
            expected += _anchors(f"parameter-{entry}--", spec.get("options"), "options")
        pages[f"{role}_role.html"] = expected
    for page, expected in pages.items():
        if f'href="{page}' not in index_text:
            problems.append(f"index.html does not link {page}")
        if not (html / page).is_file():
            problems.append(f"{page} was not built")
            continue
        text = (html / page).read_text()
        problems += [f"{page}: no {anchor}" for anchor in expected if anchor not in text]
    guide = html / "docsite" / "guide.html"
    if not guide.is_file() or 'href="docsite/guide.html' not in index_text:
        problems.append("the Guides page (docs/docsite/rst/guide.rst) was not built or is not linked from index.html")
    else:
        guide_text = guide.read_text()
        shipped = _shipped_guides()
        named = set(re.findall(r"docs/[\w.-]+\.md", guide_text))
        problems += [f"docsite/guide.html does not name {name}, which the tarball ships" for name in shipped
                     if name not in named]
        problems += [f"docsite/guide.html names {name}, which the tarball does not ship" for name in sorted(named)
                     if name not in shipped]
    if not problems:
        print(f"docs: {len(pages)} pages checked: {', '.join(sorted(pages))}; "
              f"{sum(map(len, pages.values()))} options, return values and entry points rendered; docsite/guide.html")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("prepare", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "prepare":
        prepare(Path(argv[2]))
        return 0
    problems = check(Path(argv[2]))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
