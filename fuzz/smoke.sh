#!/usr/bin/env bash
# CI smoke run of the fuzz targets: builds every target, then runs each for
# a few seconds over its committed seed corpus and its kept crash inputs
# (fuzz/regressions/<target>/, replayed first). Exits non-zero if a target
# fails to build, crashes, hangs (-timeout) or runs out of memory.
#
#   fuzz/smoke.sh                      # 5 s per target
#   GIVA_FUZZ_SMOKE_SECS=30 fuzz/smoke.sh
#
# Stable Rust is enough: `--sanitizer none` (no ASan, which needs nightly).
# The build goes to fuzz/target/smoke, unoptimized (`--dev`, the fastest
# build; a few seconds of fuzzing do not need speed) unless
# GIVA_FUZZ_SMOKE_PROFILE=release; long runs use an optimized build in
# fuzz/target (see README.md).
set -euo pipefail
cd "$(dirname "$0")"

SECS="${GIVA_FUZZ_SMOKE_SECS:-5}"
PROFILE="${GIVA_FUZZ_SMOKE_PROFILE:-dev}"
TARGET_DIR="target/smoke"
started=$(date +%s)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz (cargo install, about 1-2 minutes)"
    cargo install cargo-fuzz --locked
fi

echo "smoke: building all targets"
triple="$(rustc -vV | sed -n 's/^host: //p')"
if [ "$PROFILE" = dev ]; then
    cargo fuzz build --sanitizer none --dev --target-dir "$TARGET_DIR"
    bin="$TARGET_DIR/$triple/debug"
else
    cargo fuzz build --sanitizer none --codegen-units 16 --target-dir "$TARGET_DIR"
    bin="$TARGET_DIR/$triple/release"
fi
built=$(date +%s)

failed=()
for t in $(cargo fuzz list); do
    work="$(mktemp -d)"
    inputs=("corpus-seed/$t")
    [ -d "regressions/$t" ] && inputs+=("regressions/$t")
    mkdir -p "artifacts/$t"
    echo "smoke: $t (${SECS} s)"
    if "$bin/$t" "$work" "${inputs[@]}" \
        -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        >"$work.log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+DONE' "$work.log" | tail -1 || true
    else
        echo "smoke: $t FAILED; crash input (if any) in fuzz/artifacts/$t/; log:"
        grep -v '^#' "$work.log" | tail -40
        failed+=("$t")
    fi
    rm -rf "$work" "$work.log"
done

end=$(date +%s)
echo "smoke: build $((built - started)) s, runs $((end - built)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "smoke: failing targets: ${failed[*]}"
    exit 1
fi
echo "smoke: all targets ok"
