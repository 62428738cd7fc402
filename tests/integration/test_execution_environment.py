"""AWX / Ansible Automation Platform: the execution environment of docs/awx/ and what the
collection declares for it, checked with ansible-builder itself (neither command below needs a
container engine):

- ``ansible-builder create`` turns docs/awx/execution-environment.yml into the build context a
  user's podman or docker builds; the tests read its Containerfile and the requirement file it
  copies;
- lay7.ha installed the way that Containerfile's galaxy stage installs it (ansible-galaxy from a
  git repository, here one made of the working tree) carries meta/execution-environment.yml,
  and ``ansible-builder introspect`` on it, the command the builder stage runs, finds the Python
  and system requirements meta/ declares: they reach the image;
- the declarations themselves: every third-party import of the controller-side plugins is
  declared, the cryptography minimum is the one the TLS filter enforces, and the system
  requirement resolves to the SSH client package of the image's distribution.

ansible-builder runs from build/builder-venv (``make builder-tools``, from
tests/builder-requirements.txt): a virtualenv of its own, so its dependencies never change the
ones the tests run with.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import ansible.release
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from ansible_collections.lay7.ha.plugins.plugin_utils import _tls

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILDER_BIN = ROOT / "build" / "builder-venv" / "bin"
EE_FILE = ROOT / "docs" / "awx" / "execution-environment.yml"
EE = yaml.safe_load(EE_FILE.read_text())
EE_REQUIREMENTS = EE_FILE.parent / EE["dependencies"]["galaxy"]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
META = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
PYTHON_REQUIREMENTS = ROOT / META["dependencies"]["python"]
SYSTEM_REQUIREMENTS = ROOT / META["dependencies"]["system"]
# bindep's view of each base image the definition may name: (distro id, version). A new base
# image has to be added here, so the system requirements are resolved for its distribution.
BASE_DISTRO = {"quay.io/centos/centos:stream9": ("centos", "9")}
# The packages bindep lists from a file on each of the given distributions (a JSON list of
# [distro id, version]): what ansible-builder's assemble step does with bindep.txt on the image,
# bindep with the default profile and the platform's profiles. One process for all of them:
# loading the file (bindep compiles its grammar) is most of the time.
BINDEP_RESOLVE = """
import json, sys
import distro
from bindep.depends import Depends
depends = Depends(open(sys.argv[1]).read())
resolved = {}
for distro_id, version in json.loads(sys.argv[2]):
    distro.id = lambda: distro_id
    distro.version = lambda *args, **kwargs: version
    distro.codename = lambda *args, **kwargs: ""
    distro.name = lambda *args, **kwargs: ""
    rules = depends.active_rules(["default"] + depends.platform_profiles())
    resolved[distro_id + " " + version] = [rule[0] for rule in rules]
print(json.dumps(resolved))
"""


def _builder_tool(name: str) -> pathlib.Path:
    tool = BUILDER_BIN / name
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run `make builder-tools` (make integration does)")
    return tool


def _run(cmd: list, cwd: pathlib.Path, env: dict | None = None) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _lines(path: pathlib.Path) -> list[str]:
    """A requirements or bindep file's entries, as ansible-builder reads them: no comment lines,
    no blank lines."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _stages(containerfile: str) -> dict[str, list[str]]:
    """The Containerfile's lines by build stage (``FROM ... AS <stage>``)."""
    stages: dict[str, list[str]] = {}
    current = None
    for line in containerfile.splitlines():
        match = re.match(r"FROM \S+ AS (\w+)$", line)
        if match:
            current = stages.setdefault(match.group(1), [])
        elif current is not None and line:
            current.append(line)
    return stages


def _index(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert len(found) == 1, f"{pattern!r}: {len(found)} lines in\n" + "\n".join(lines)
    return found[0]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("ee") / "context"
    _run([_builder_tool("ansible-builder"), "create", "--file", EE_FILE, "--context", out,
          "--output-filename", "Containerfile"], EE_FILE.parent)
    return out


def test_image_gets_a_core_this_collection_supports_on_its_python(context):
    containerfile = (context / "Containerfile").read_text()
    build_args = dict(re.findall(r'^ARG (\w+)="(.*)"$', containerfile, re.M))
    assert build_args["EE_BASE_IMAGE"] in BASE_DISTRO
    refs = {canonicalize_name(req.name): req for req in map(Requirement, build_args["ANSIBLE_INSTALL_REFS"].split())}
    assert set(refs) == {"ansible-core", "ansible-runner"}, refs
    core = refs["ansible-core"].specifier
    # Every core the range admits from its lowest release on is one meta/runtime.yml admits...
    lowest = min(Version(spec.version) for spec in core if spec.operator in (">=", "=="))
    requires_ansible = SpecifierSet(yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"])
    assert lowest in requires_ansible, f"the image may get ansible-core {lowest}; meta/runtime.yml: {requires_ansible}"
    # ... and the core these tests run with is one of them.
    assert core.contains(ansible.release.__version__), f"{core} leaves out the tested ansible-core {ansible.release.__version__}"
    # The interpreter the image installs is one that core runs on (2.19 needs 3.11).
    python = re.fullmatch(r"/usr/bin/python(\d+\.\d+)", build_args["PYCMD"])
    assert python, build_args["PYCMD"]
    requires_python = SpecifierSet(importlib.metadata.metadata("ansible-core")["Requires-Python"])
    assert Version(python.group(1)) in requires_python, f"ansible-core needs Python {requires_python}"
    assert build_args["PYPKG"] == f"python{python.group(1)}"


def test_galaxy_stage_installs_lay7_ha_from_its_git_repository(context):
    copied = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert copied == yaml.safe_load(EE_REQUIREMENTS.read_text())
    [entry] = copied["collections"]
    assert entry["type"] == "git"
    assert entry["name"].startswith(GALAXY["repository"]), entry
    stages = _stages((context / "Containerfile").read_text())
    galaxy = stages["galaxy"]
    assert _index(galaxy, r"install -y git") < _index(galaxy, r"ansible-galaxy collection install .*-r requirements\.yml"), \
        "git must be installed before ansible-galaxy clones the requirement"
    # The builder stage introspects the collections the galaxy stage installed (that is how the
    # collection's requirements reach the image); the final image gets the collections and the
    # packages the introspection listed.
    builder = stages["builder"]
    assert _index(builder, r"^COPY --from=galaxy /usr/share/ansible ") < _index(builder, r"introspect\.py introspect"), \
        "the introspection must see the installed collections"
    final = stages["final"]
    _index(final, r"^COPY --from=galaxy /usr/share/ansible ")
    _index(final, r"install-from-bindep")
    assert not [line for line in final if re.search(r"\bgit\b", line)], "git is needed only to install the collection"


@pytest.fixture(scope="module")
def git_installed(tmp_path_factory) -> pathlib.Path:
    """lay7.ha installed as the image's galaxy stage installs it: ansible-galaxy and the
    definition's git requirement, pointed at a git repository of the working tree (tracked and
    untracked files, what the next commit would hold)."""
    tmp = tmp_path_factory.mktemp("git-install")
    repo = tmp / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        path = ROOT / rel
        if path.is_file() and not path.is_symlink():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, repo / rel)
    git = ["git", "-c", "user.name=lay7 test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    _run(git + ["init", "-q", "-b", "main"], repo)
    _run(git + ["add", "-A"], repo)
    _run(git + ["commit", "-q", "-m", "working tree"], repo)
    [entry] = yaml.safe_load(EE_REQUIREMENTS.read_text())["collections"]
    requirements = tmp / "requirements.yml"
    requirements.write_text(yaml.safe_dump({"collections": [{**entry, "name": repo.as_uri(), "version": "main"}]}))
    collections = tmp / "collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               ANSIBLE_HOME=str(tmp / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
               ANSIBLE_COLLECTIONS_PATH=str(collections))
    _run(["ansible-galaxy", "collection", "install", "-r", requirements, "-p", collections], tmp, env)
    return collections


def test_introspect_finds_the_declared_requirements_in_the_installed_collection(git_installed, tmp_path):
    installed = git_installed / "ansible_collections" / "lay7" / "ha"
    assert (installed / "meta" / "execution-environment.yml").is_file(), "ansible-builder would find no requirements"
    assert not (installed / "tests").exists(), "the git install should honour galaxy.yml build_ignore"
    pip, bindep = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    out = _run([_builder_tool("ansible-builder"), "introspect", git_installed,
                "--write-pip", pip, "--write-bindep", bindep], tmp_path)
    report = yaml.safe_load(out[out.index("---"):])
    python = [f"{line}  # from collection lay7.ha" for line in _lines(PYTHON_REQUIREMENTS)]
    system = [f"{line}  # from collection lay7.ha" for line in _lines(SYSTEM_REQUIREMENTS)]
    assert python and system
    assert report == {"python": python, "system": system}
    # The files the builder stage's assemble step installs from.
    assert pip.read_text().splitlines() == python
    assert bindep.read_text().splitlines() == system


def _declared_python() -> dict[str, Requirement]:
    return {canonicalize_name(req.name): req for req in map(Requirement, _lines(PYTHON_REQUIREMENTS))}


def test_every_third_party_import_on_the_controller_is_declared():
    """Filters, plugin_utils and any other controller-side plugin run in the execution
    environment; modules and module_utils run on the managed hosts and are not its concern."""
    imports: dict[str, set[str]] = {}
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[1] in ("modules", "module_utils"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top not in ("ansible", "ansible_collections"):
                    imports.setdefault(top, set()).add(str(rel))
    assert "cryptography" in imports, "the TLS preflight imports cryptography"
    distributions = importlib.metadata.packages_distributions()
    declared = _declared_python()
    undeclared = {top: sorted(files) for top, files in imports.items()
                  if not {canonicalize_name(d) for d in distributions.get(top, [top])} & set(declared)}
    assert not undeclared, f"imported on the controller, not in {PYTHON_REQUIREMENTS.relative_to(ROOT)}: {undeclared}"


def test_cryptography_minimum_is_the_one_the_tls_filter_enforces():
    major, minor = _tls.MIN_CRYPTOGRAPHY
    specifier = _declared_python()["cryptography"].specifier
    assert specifier.contains(f"{major}.{minor}.0")
    below = f"{major}.{minor - 1}.99" if minor else f"{major - 1}.99.99"
    assert not specifier.contains(below), f"{specifier} admits cryptography {below}, which tls_compile refuses"


def test_system_requirements_resolve_to_the_ssh_client_of_the_distribution():
    """bindep picks the right package on the image's distribution (a misspelt platform selector
    would leave the image without ssh and ssh-agent, silently), and on Debian, where
    `bindep -f meta/ee-bindep.txt` tells a control node what is missing."""
    image = " ".join(BASE_DISTRO[EE["images"]["base_image"]["name"]])
    distros = [image.split(), ["debian", "12"]]
    out = _run([_builder_tool("python"), "-c", BINDEP_RESOLVE, SYSTEM_REQUIREMENTS, json.dumps(distros)], ROOT)
    assert json.loads(out) == {image: ["openssh-clients"], "debian 12": ["openssh-client"]}
