"""Make ``ansible_collections.lay7.ha`` importable for the unit and integration tests.

``make collection`` links the working tree at .collections/ansible_collections/lay7/ha; when
pytest runs without it (a bare ``pytest tests/unit``), a temporary link is made instead.
"""

import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _collections_root() -> pathlib.Path:
    linked = ROOT / ".collections"
    if (linked / "ansible_collections" / "lay7" / "ha" / "galaxy.yml").is_file():
        return linked
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="lay7-ha-collections-"))
    (tmp / "ansible_collections" / "lay7").mkdir(parents=True)
    (tmp / "ansible_collections" / "lay7" / "ha").symlink_to(ROOT)
    return tmp


COLLECTIONS_ROOT = _collections_root()
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
