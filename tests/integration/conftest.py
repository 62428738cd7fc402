"""Import paths for the integration tests (the collection itself comes from tests/conftest.py):
the unit tests' reference matcher, which the loopback test uses as its oracle, and this
directory's loopback harness."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

for extra in (ROOT / "tests" / "unit" / "plugins" / "filter", pathlib.Path(__file__).parent):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
