#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs the package, then runs a job.
#   scripts/run.sh test [pytest args]   set up, check formatting and lint (ruff), build the documentation site
#                                       (mkdocs --strict), then run the whole test suite (what CI runs)
#   scripts/run.sh demo [demo args]     set up, then run the main job on the built-in world
#   scripts/run.sh docs [serve args]    set up, then build and serve the documentation site on localhost:8000
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
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[test,docs]'
        echo "$want" > "$STAMP"
    fi
}

browser() {
    # The leaderboard's browser test drives Debian's headless Chromium. CI runs as root with apt: install it there
    # (quietly, once). Elsewhere warn; NOISYCLIP_REQUIRE_BROWSER=1 (set below) makes the test fail without it.
    [ -x /usr/bin/chromium ] && return 0
    local why="the browser test will fail (NOISYCLIP_REQUIRE_BROWSER=0 skips it)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq chromium >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
            || echo "scripts/run.sh: warning: could not install chromium with apt-get; $why" >&2
    else
        echo "scripts/run.sh: warning: chromium missing, apt-get unavailable or not root; $why" >&2
    fi
}

job=${1:-test}
shift || true
case "$job" in
    setup) setup ;;
    test) setup; browser; export NOISYCLIP_REQUIRE_BROWSER=${NOISYCLIP_REQUIRE_BROWSER:-1}
          "$VENV/bin/ruff" format --check --quiet . || { echo "scripts/run.sh: run 'ruff format .'" >&2; exit 1; }
          "$VENV/bin/ruff" check --quiet .
          NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet --site-dir "$VENV/site-check"
          export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; exec "$VENV/bin/python" -m pytest "$@" ;;
    demo) setup; export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; exec "$VENV/bin/noisyclip" demo "$@" ;;
    docs) setup; export NO_MKDOCS_2_WARNING=1; exec "$VENV/bin/mkdocs" serve "$@" ;;
    *) echo "usage: scripts/run.sh {setup|test|demo|docs} [args]" >&2; exit 2 ;;
esac
