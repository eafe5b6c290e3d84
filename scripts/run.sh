#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs the package, then runs a job.
#   scripts/run.sh test [pytest args]   set up, then run the whole test suite (what CI runs)
#   scripts/run.sh demo [demo args]     set up, then run the main job on the built-in world
#   scripts/run.sh setup                set up only
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.installed"
want=$(cat pyproject.toml .ci/constraints.txt | sha256sum | cut -d' ' -f1)

setup() {
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
        # torch/torchvision are pinned for CI in .ci/constraints.txt; users get the loose pins of pyproject.toml.
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[test]'
        echo "$want" > "$STAMP"
    fi
}

job=${1:-test}
shift || true
case "$job" in
    setup) setup ;;
    test) setup; export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; exec "$VENV/bin/python" -m pytest "$@" ;;
    demo) setup; export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; exec "$VENV/bin/noisyclip" demo "$@" ;;
    *) echo "usage: scripts/run.sh {setup|test|demo} [args]" >&2; exit 2 ;;
esac
