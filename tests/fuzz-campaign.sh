#!/usr/bin/env bash
# One fuzz campaign as the hostile-input issue asks: a target runs until
# 10^7 executions or 30 minutes, whichever comes first, from a scratch copy
# of its committed corpus (the committed one stays a small sample the
# replay tests read). Prints libFuzzer's final stats; a failing input lands
# in crates/<crate>/fuzz/artifacts/<target>/ and the script exits non-zero.
#
#   tests/fuzz-campaign.sh TARGET [SECONDS=1800] [RUNS=10000000]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Env: FUZZ_WORK (scratch corpora; /tmp/holdfast-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: tests/fuzz-campaign.sh TARGET [SECONDS] [RUNS]}
seconds=${2:-1800}
runs=${3:-10000000}
dir=""
for crate in crates/*/fuzz; do
  [ -f "$crate/fuzz_targets/$target.rs" ] && dir=$crate
done
[ -n "$dir" ] || { echo "no fuzz target named $target under crates/*/fuzz" >&2; exit 2; }
work=${FUZZ_WORK:-/tmp/holdfast-fuzz}/$target
mkdir -p "$work"
cp -n "$dir/corpus/$target/"* "$work/" 2>/dev/null || true
extra=()
[ -f "$dir/$target.dict" ] && extra+=("-dict=$target.dict")
cd "$dir"
exec cargo +nightly fuzz run -O "$target" "$work" -- \
  -runs="$runs" -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}"
