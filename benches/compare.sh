#!/usr/bin/env bash
# Pass-through and remembered-JWT rows of benches/instructions.sh for two builds, interleaved in
# one run (callgrind; the before/after check of a change to the request path):
#   OLD=/tmp/handoff-main NEW=target/release/handoff N=3000 benches/compare.sh
# With OLD_MINIMAL=… NEW_MINIMAL=… (two builds of examples/minimal_proxy), their rows too.
set -euo pipefail
N=${N:-2000}
export RUST_LOG=info
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/benches/lib.sh"
setup_work
start_origin
P0=$(free_port); handoff_config warm "$P0" ""; TOKEN=$(session_token)
for round in 1 2; do
  for bin in "${OLD:?OLD=the build before}" "${NEW:?NEW=the build after}"; do
    for route in / /jwt; do
      P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P")"
      callgrind_run "x" "$P" "$route" "$N" "$bin" run --config "$work/handoff-$P.toml"
      echo "round $round $bin $route $(( CALLGRIND_TOTAL / N )) instructions," \
        "$(python3 -c "print(f'{$CALLGRIND_ALLOCS / $N:.1f}')") allocations per request"
    done
  done
  [ -n "${OLD_MINIMAL:-}" ] || continue
  for bin in "$OLD_MINIMAL" "${NEW_MINIMAL:?NEW_MINIMAL=the minimal proxy after}"; do
    P=$(free_port)
    callgrind_run "x" "$P" / "$N" "$bin" "127.0.0.1:$P" "127.0.0.1:$ORIGIN"
    echo "round $round $bin / $(( CALLGRIND_TOTAL / N )) instructions," \
      "$(python3 -c "print(f'{$CALLGRIND_ALLOCS / $N:.1f}')") allocations per request"
  done
done
