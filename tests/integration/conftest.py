"""Import paths for the integration tests: the collection (as ansible_collections.lay7.ha)
and the unit tests' reference matcher, which the loopback test uses as its oracle."""

import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _collections_root() -> pathlib.Path:
    linked = ROOT / ".collections"
    if (linked / "ansible_collections" / "lay7" / "ha" / "galaxy.yml").is_file():
        return linked
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="lay7-ha-collections-"))
    (tmp / "ansible_collections" / "lay7").mkdir(parents=True)
    (tmp / "ansible_collections" / "lay7" / "ha").symlink_to(ROOT)
    return tmp


for extra in (_collections_root(), ROOT / "tests" / "unit" / "plugins" / "filter", pathlib.Path(__file__).parent):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
