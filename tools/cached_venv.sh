#!/usr/bin/env bash
# Usage: tools/cached_venv.sh DIR REQUIREMENTS
#
# Makes DIR (in build/) a symbolic link to a virtualenv with REQUIREMENTS installed, kept in a
# cache outside the clone: $LAY7_TOOL_CACHE, by default ~/.cache/lay7-ha/venvs. The tool
# virtualenvs (the ansible-core matrix, the docs, the TLS scanner, ansible-builder) cost minutes
# of downloads and installs, which every fresh clone on the machine, CI's included, would pay
# again; make test has a 25-minute budget. Each is named after DIR and a hash of the
# requirements file and the Python version, so a changed pin (or another Python) gets a
# virtualenv of its own and a stale one is never reused. A virtualenv is only used once it is
# complete (the marker file written last), and a lock keeps two makes on one machine from
# building the same one at once. `make clean-cache` removes them all.
set -euo pipefail

dir=$1 req=$2
python=${PYTHON:-python3}
cache=${LAY7_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lay7-ha/venvs}
key=$({ cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
target=$cache/$(basename "$dir")-$key

mkdir -p "$cache" "$(dirname "$dir")"
exec 9>"$target.lock"
flock 9
if [ ! -e "$target/.complete" ]; then
    # A half-built one (an interrupted install) is made again from scratch.
    rm -rf "$target"
    "$python" -m venv "$target"
    "$target/bin/pip" install -q -r "$req"
    touch "$target/.complete"
fi
# DIR may be an earlier link (replaced) or a virtualenv made before this cache existed (removed).
rm -rf "$dir"
ln -s "$target" "$dir"
