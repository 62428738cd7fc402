"""Import paths for the integration tests (the collection itself comes from tests/conftest.py):
the unit tests' reference matcher, which the loopback test uses as its oracle, this
directory's loopback harness and the lab's certificate authority (lab/pki.py)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The repository root too: the HTTPS render tests make their certificates with lab/pki.py.
for extra in (ROOT / "tests" / "unit" / "plugins" / "filter", pathlib.Path(__file__).parent, ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
