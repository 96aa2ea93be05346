#!/usr/bin/env bash
# The project's test command: sets up .venv on a fresh machine, then runs the test suite.
#   bash scripts/test.sh            fast suite (2-3 minutes on 2 CPU cores; kept under 10)
#   bash scripts/test.sh --slow     only the slow tests (end-to-end training until the model detects)
#   bash scripts/test.sh --all      everything
# Extra arguments go to pytest, e.g. bash scripts/test.sh tests/modeling -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
MARK=(-m "not slow")
case "${1:-}" in
  --slow) MARK=(-m "slow"); shift ;;
  --all) MARK=(-m "slow or not slow"); shift ;;
esac
# One style before any test: the lint configuration is pyproject.toml's [tool.ruff].
.venv/bin/ruff check frcnn scripts tests
# Spinning OpenMP threads make CPU tests crawl when processes share the 2 cores (see frcnn/cli/__init__.py).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec .venv/bin/python -m pytest "${MARK[@]}" "$@"
