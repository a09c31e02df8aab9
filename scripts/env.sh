# Shared settings for the scripts; sourced, not run. Caches live outside the clone so
# warm runs are fast and a fresh clone still works.
export STRAIT_CACHE="${STRAIT_CACHE:-/var/cache/strait}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STRAIT_CACHE/target}"
export STRAIT_VENV="$STRAIT_CACHE/venv"
export ENVOY_VERSION="1.40.0"
export STRAIT_BIN_DIR="$CARGO_TARGET_DIR/debug"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
