"""Offline stand-in for ansible-test's pip bootstrap script (get-pip), used by ``make sanity``.

ansible-test creates one virtualenv per sanity test and seeds pip into it by running a
bootstrap script it normally downloads from ci-files.testing.ansible.com, which this
environment cannot reach. This script does the same job from the pip wheel that
``make sanity`` downloads from PyPI into the same directory as this script (ansible-test
passes no environment through): it runs ``pip install <args>`` from the wheel, which installs
pip into the running interpreter.
"""

from __future__ import annotations

import glob
import os
import sys

# get-pip options that pip itself does not know: they only say "do not also install these".
GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def main() -> int:
    wheels = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-*.whl")))
    if not wheels:
        print("pip_bootstrap: no pip-*.whl next to this script", file=sys.stderr)
        return 1
    wheel = wheels[-1]
    sys.path.insert(0, wheel)
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    return pip_main(["install", "--no-cache-dir", *args])


if __name__ == "__main__":
    sys.exit(main())
