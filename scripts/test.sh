#!/usr/bin/env bash
# The test command: install what is missing, build with warnings as errors,
# run every ctest test (unit, integration, fault), check docker-compose.yml
# and the C files' layout (clang-format),
# then build again with AddressSanitizer + UndefinedBehaviorSanitizer and run
# every test once more against those binaries. Every step runs even when an
# earlier one failed (a failed build skips only its own tests); the summary
# at the end lists each step, and the exit status is non-zero if any failed.
#
#   scripts/test.sh              from anywhere inside the repository
#   SB_TEST_SKIP_ASAN=1 ...      skip the sanitizer pass (quicker local runs)
#   SB_TEST_SKIP_FUZZ=1 ...      skip the libFuzzer pass
#   SB_FUZZ_SECONDS=N ...        seconds per fuzz target (default 20)
#   SB_TEST_PG_PORT=N ...        port of the tests' PostgreSQL (default 19432: below the ephemeral port range, so no outgoing connection holds it)
#
# A skipped test is not a passed one: the summary lists each as SKIPPED with
# the reason it printed, and with CI=true a skip fails the run unless
# SB_TEST_ALLOW_SKIP names the test (space- or comma-separated ctest names,
# e.g. SB_TEST_ALLOW_SKIP=integration.test_netns where ip netns is refused).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

results=()
failed=0
# step NAME COMMAND...: run, time and record one step.
step() {
  local name=$1 start=$SECONDS rc=0
  shift
  echo
  echo "==> $name"
  "$@" || rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    results+=("$(printf '%-7s %5ss  %s' ok "$took" "$name")")
  else
    results+=("$(printf '%-7s %5ss  %s (exit %s)' FAILED "$took" "$name" "$rc")")
    failed=1
  fi
  return "$rc"
}
skip() {
  results+=("$(printf '%-7s %6s  %s' skip '' "$1")")
}

build() {  # build DIR CMAKE-OPTIONS...
  local dir=$1
  shift
  cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON \
    -DSB_TEST_PG_PORT="${SB_TEST_PG_PORT:-19432}" "$@" &&
    cmake --build "$dir" -j"$jobs"
}

# skips DIR: add each test the last ctest run in DIR skipped to the summary;
# under CI=true one that SB_TEST_ALLOW_SKIP does not name fails the run.
skips() {
  local name why allowed
  while IFS=$'\t' read -r name why; do
    allowed=0
    case " ${SB_TEST_ALLOW_SKIP//,/ } " in *" $name "*) allowed=1 ;; esac
    if [ "${CI:-}" = true ] && [ "$allowed" = 0 ]; then
      results+=("$(printf '%-7s %5s  %s: %s (CI=true: not in SB_TEST_ALLOW_SKIP)' SKIPPED '' "$name" "$why")")
      failed=1
    else
      results+=("$(printf '%-7s %5s  %s: %s' SKIPPED '' "$name" "$why")")
    fi
  done < <(python3 "$top/scripts/junit_skips.py" "$1/junit.xml" || echo $'junit.xml\tunreadable')
}

run_ctest() {  # run_ctest DIR [CTEST-OPTIONS...]
  local dir=$1 rc=0
  shift
  rm -f "$dir/junit.xml"
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j2 --output-junit junit.xml "$@") || rc=$?
  skips "$dir"
  return "$rc"
}

run_ctest_asan() {
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest "$1"
}

# Every tracked C file laid out as .clang-format says (the house style);
# `clang-format -i $(git ls-files '*.c' '*.h')` fixes what this reports.
check_format() {
  (cd "$top" && git ls-files -z '*.c' '*.h' | xargs -0 clang-format --dry-run --Werror)
}

check_compose() {
  docker-compose -f "$top/docker-compose.yml" config -q
}

step "dependencies (scripts/deps.sh)" scripts/deps.sh || true

if step "build (build/, -DSB_WERROR=ON)" build "$top/build"; then
  step "tests (build/)" run_ctest "$top/build" || true
else
  skip "tests (build/): the build failed"
fi

step "docker-compose.yml (docker-compose config -q)" check_compose || true
step "C layout (clang-format --dry-run --Werror)" check_format || true

if [ "${SB_TEST_SKIP_ASAN:-0}" = 1 ]; then
  skip "ASan+UBSan build and tests (SB_TEST_SKIP_ASAN=1)"
elif step "build (build-asan/, ASan+UBSan)" build "$top/build-asan" -DSB_ASAN=ON -DSB_UBSAN=ON; then
  step "tests under ASan+UBSan (build-asan/)" run_ctest_asan "$top/build-asan" || true
else
  skip "tests (build-asan/): the build failed"
fi

# libFuzzer: each target for SB_FUZZ_SECONDS (default 20) on its corpus; a
# crash fails. Needs clang (installed by deps.sh).
run_fuzz() {
  run_ctest "$1" -L fuzz
}
if [ "${SB_TEST_SKIP_FUZZ:-0}" = 1 ]; then
  skip "fuzzing (SB_TEST_SKIP_FUZZ=1)"
elif step "build (build-fuzz/, clang libFuzzer)" build "$top/build-fuzz" -DCMAKE_C_COMPILER=clang \
    -DSB_FUZZ=ON -DSB_FUZZ_SECONDS="${SB_FUZZ_SECONDS:-20}"; then
  step "fuzzing, ${SB_FUZZ_SECONDS:-20}s per target (build-fuzz/)" run_fuzz "$top/build-fuzz" || true
else
  skip "fuzzing: the build failed"
fi

echo
echo "==> summary (${SECONDS}s)"
printf '  %s\n' "${results[@]}"
if [ "$failed" -ne 0 ]; then
  echo "FAILED"
  exit 1
fi
echo "all passed"
