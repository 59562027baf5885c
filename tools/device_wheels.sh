#!/usr/bin/env bash
# Fetch, here (where PyPI is reachable), the wheels that a GPU host's image lacks, into .whl/ (git-ignored), for
# bench/device_session.sh to install there with `pip install --no-index --target /tmp/site`. The host runs
# Python 3.12 and has jax, flax, optax, orbax, torch, transformers, etils and pytest already.
#
#   bash tools/device_wheels.sh            # the packages below, at the versions this checkout's venv runs
#   bash tools/device_wheels.sh --tests    # also what the test suite needs (datasets, tfds, faiss-cpu, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >>.git/info/exclude
mkdir -p .whl

runtime=(ml_collections==1.1.0 tensorboardX==2.6.5)
tests=(faiss-cpu==1.15.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 tensorflow-datasets==4.9.10
       array_record==0.8.6 dm-tree==0.1.10 immutabledict==4.3.1 promise==2.3 simple-parsing==0.1.9
       docstring_parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 termcolor==3.3.0
       toml==0.10.2 importlib_resources==7.1.0)
wanted=("${runtime[@]}")
[ "${1:-}" = "--tests" ] && wanted+=("${tests[@]}")

platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }
for spec in "${wanted[@]}"; do
  # A binary wheel for CPython 3.12 on x86-64 Linux; a pure-Python one; else (an sdist only, e.g. promise) built here.
  quiet python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${platforms[@]}" -d .whl "$spec" 2>/dev/null \
    || quiet python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl "$spec" 2>/dev/null \
    || quiet python3 -m pip wheel -q --no-deps -w .whl "$spec"
done
du -sh .whl
ls .whl
