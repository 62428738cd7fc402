"""The collection builds into a tarball that installs offline and documents its filters.

The build runs on a copy of the working tree seeded with development artefacts (lab/, .venv,
tests/output, bench results, caches), so the test proves galaxy.yml's build_ignore keeps them
out without touching the real tree.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
FILTERS = sorted(p.stem for p in (ROOT / "plugins" / "filter").glob("*.py") if not p.name.startswith("_"))

DEV_ARTEFACTS = [
    "lab/marker.py",
    ".venv/marker",
    "tests/output/marker",
    "bench/results/marker.json",
    ".collections/marker",
    ".pytest_cache/marker",
    "plugins/filter/__pycache__/marker.pyc",
    "build/marker",
]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCAL_TEMP"] = extra.pop("tmp")
    env.update(extra)
    return env


def _run(cmd: list, cwd: pathlib.Path, env: dict) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("collection")
    src = tmp / "src"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        path = ROOT / rel
        if path.is_file() and not path.is_symlink():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / rel)
    for rel in DEV_ARTEFACTS:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("development artefact, must not be shipped\n")
    env = _env(tmp=str(tmp / "ansible-tmp"))
    dist = tmp / "dist"
    _run(["ansible-galaxy", "collection", "build", "--output-path", str(dist), str(src)], tmp, env)
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    tarballs = list(dist.glob("*.tar.gz"))
    assert [t.name for t in tarballs] == [f"lay7-ha-{galaxy['version']}.tar.gz"]
    coll = tmp / "installed"
    # Only the fresh install path is configured, so a copy installed elsewhere on this
    # machine (e.g. ~/.ansible/collections) can neither satisfy nor shadow it.
    env["ANSIBLE_COLLECTIONS_PATH"] = str(coll)
    _run(["ansible-galaxy", "collection", "install", "--offline", "--force", "-p", str(coll), str(tarballs[0])], tmp, env)
    return {"tarball": tarballs[0], "collections": coll, "env": env, "cwd": tmp}


# What a Galaxy user runs and reads, and what stays in the repository (galaxy.yml build_ignore).
SHIPPED = {"MANIFEST.json", "FILES.json", "LICENSE", "README.md", "meta/runtime.yml",
           "plugins/filter/route_compile.py", "plugins/plugin_utils/_routes.py", "playbooks/site.yml",
           "playbooks/vars/topology.yml", "inventory/example/hosts.yml", "docs/routing.md", "docs/failover.md",
           "changelogs/changelog.yaml",
           # What ansible-builder reads from the installed collection, and the AWX guide with its
           # execution environment (docs/awx.md).
           "meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt", "docs/awx.md",
           "docs/awx/execution-environment.yml", "docs/awx/requirements.yml",
           # The Prometheus alert rules and their guide (docs/monitoring.md).
           "roles/haproxy_l7/files/prometheus/lay7-ha-alerts.yml", "docs/monitoring.md"}
REPOSITORY_ONLY_DIRS = {"lab", ".venv", "bench", ".collections", ".pytest_cache", "build", ".git", "tests", "molecule", ".config",
                        "tools", "vagrant"}
REPOSITORY_ONLY_FILES = {"site.yml", "ansible.cfg", "Makefile", "requirements.txt", "Vagrantfile", ".yamllint",
                         ".ansible-lint", "docs/lab.md", "docs/vagrant.md", "docs/development.md"}


def test_tarball_ships_what_a_user_runs_and_nothing_else(installed):
    with tarfile.open(installed["tarball"]) as tar:
        names = {n.rstrip("/") for n in tar.getnames()}
    assert SHIPPED <= names, f"missing from the tarball: {sorted(SHIPPED - names)}"
    assert any(n.startswith("roles/haproxy_l7/templates/") for n in names)
    leaked = sorted(
        n
        for n in names
        if n.split("/")[0] in REPOSITORY_ONLY_DIRS
        or n in REPOSITORY_ONLY_FILES
        or n.startswith("inventory/lab")
        or "__pycache__" in n
    )
    assert not leaked, f"repository-only files in the tarball: {leaked}"


# A Markdown link target: [text](target) or [text](target#anchor), up to the anchor.
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


def test_shipped_docs_link_only_to_shipped_files(installed):
    """Galaxy publishes the README and docs from the tarball: a relative link to a file the
    build leaves out (the lab and development docs) would be dead there."""
    root = installed["collections"] / "ansible_collections" / "lay7" / "ha"
    documents = sorted(root.rglob("*.md"))
    assert root / "README.md" in documents
    dead = [f"{doc.relative_to(root)} -> {target}"
            for doc in documents
            for target in MD_LINK.findall(doc.read_text())
            if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not (doc.parent / target).exists()]
    assert not dead, f"links to files the tarball does not hold: {dead}"


def test_installed_copy_is_complete(installed):
    root = installed["collections"] / "ansible_collections" / "lay7" / "ha"
    assert (root / "plugins" / "filter" / "route_compile.py").is_file()
    assert (root / "meta" / "runtime.yml").is_file()
    assert not (root / "lab").exists()


@pytest.mark.parametrize("name", FILTERS)
def test_ansible_doc_documents_every_filter(installed, name):
    out = _run(["ansible-doc", "-t", "filter", f"lay7.ha.{name}"], installed["cwd"], installed["env"])
    # documented from the installed copy, not the working tree
    assert str(installed["collections"]) in out
    assert "EXAMPLES" in out and "RETURN" in out.upper()
    assert f"lay7.ha.{name}(" in out


def test_ansible_doc_route_compile_content(installed):
    out = _run(["ansible-doc", "-t", "filter", "lay7.ha.route_compile"], installed["cwd"], installed["env"])
    for text in ("path-element prefix", "fallback", "map_threshold", "default_backend", "nbsrv"):
        assert text in out, text
    listed = _run(["ansible-doc", "-t", "filter", "-l", "lay7.ha"], installed["cwd"], installed["env"])
    assert "lay7.ha.route_compile" in listed


def test_installed_filter_runs_in_a_playbook(installed, tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Compile the seed route table with the installed collection",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {
                        "backends": {
                            "main": {"servers": [{"name": "web1", "address": "192.0.2.11"}], "fallback": "a_pool"},
                            "a_pool": {"servers": [{"name": "web2", "address": "192.0.2.12"}], "fallback": "main"},
                        },
                        "routes": [{"name": "a", "path": "/a", "backend": "a_pool"}],
                    },
                    "tasks": [
                        {
                            "name": "Show the compiled frontend",
                            "ansible.builtin.debug": {
                                "msg": "{{ (routes | lay7.ha.route_compile(backends, 'main')).frontend | join(' | ') }}"
                            },
                        },
                        {
                            "name": "A typo fails before anything is deployed",
                            "block": [
                                {
                                    "name": "Compile a route with a typo",
                                    "ansible.builtin.debug": {
                                        "msg": "{{ [{'name': 'x', 'path': '/x', 'bakend': 'main'}] | lay7.ha.route_compile(backends, 'main') }}"
                                    },
                                }
                            ],
                            "rescue": [
                                {
                                    "name": "The error names the route and the key",
                                    "ansible.builtin.assert": {
                                        "that": ["\"route 'x' (index 0): unknown key 'bakend'\" in ansible_failed_result.msg"]
                                    },
                                }
                            ],
                        },
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    out = _run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook)], tmp_path, installed["env"])
    assert "use_backend main if !{ nbsrv(a_pool) gt 0 } { nbsrv(main) gt 0 } route_a_path" in out
    assert "failed=0" in out and "rescued=1" in out


def test_site_playbook_by_its_fqcn_with_the_example_inventory(installed):
    """What the README tells a consumer to run, from the installed copy in an empty directory:
    the collection playbook by its FQCN against inventory/example (syntax and host selection;
    no host is contacted)."""
    inventory = str(ROOT / "inventory" / "example")
    out = _run(["ansible-playbook", "-i", inventory, "--syntax-check", "lay7.ha.site"], installed["cwd"], installed["env"])
    assert "lay7.ha.site" in out or "playbook:" in out
    listed = _run(["ansible-playbook", "-i", inventory, "--list-hosts", "lay7.ha.site"], installed["cwd"], installed["env"])
    for host in ("lb1", "lb2", "web1", "web2", "web3"):
        assert host in listed, listed


def test_fresh_clone_resolves_the_collection(tmp_path):
    """A fresh clone (tracked files only, no `make`) resolves lay7.ha.* roles and plugins:
    .collections/ansible_collections/lay7/ha is a committed link to the repository, which
    ansible.cfg puts on the collections path (an AWX project or `molecule test` run from a
    clone finds the roles without `make`)."""
    clone = tmp_path / "clone"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        path = ROOT / rel
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            (clone / rel).symlink_to(os.readlink(path))
        elif path.is_file():
            shutil.copy2(path, clone / rel)
    link = clone / ".collections" / "ansible_collections" / "lay7" / "ha"
    assert link.is_symlink() and (link / "galaxy.yml").is_file(), "the collection link is not tracked"
    env = _env(tmp=str(tmp_path / "ansible-tmp"))
    for playbook in ("site.yml", "playbooks/site.yml", "molecule/shared/converge.yml"):
        _run(["ansible-playbook", "--syntax-check", playbook], clone, env)
    _run(["ansible-playbook", "-i", "inventory/example", "--syntax-check", "site.yml"], clone, env)
