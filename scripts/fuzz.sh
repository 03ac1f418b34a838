#!/usr/bin/env bash
# Runs every fuzz target of the repository (each `func FuzzX` in a
# *_test.go file, found with git grep, so a new target is never left out)
# for FUZZTIME each, JOBS targets at a time, one fuzzing worker each.
# Crashers go to the package's testdata/fuzz/FuzzX/ (commit them as
# regression seeds after fixing the bug). Prints one line per target with
# its executions; exits non-zero if any target failed.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
JOBS=${JOBS:-1}
GO=${GO:-go}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
targets=$(git grep -h -n -E '^func Fuzz[A-Za-z0-9_]+\(' -- '*_test.go' >/dev/null; git grep -E '^func Fuzz[A-Za-z0-9_]+\(' -- '*_test.go' | sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\(.*#\1 \2#')
echo "fuzz: $(echo "$targets" | wc -l) targets, $FUZZTIME each, $JOBS at a time"
run() {
  local pkg=$1 fn=$2 log="$out/$2.log"
  if $GO test -run '^$' -fuzz "^$fn\$" -fuzztime "$FUZZTIME" -parallel 1 "./$pkg/" >"$log" 2>&1; then
    echo "ok   $pkg $fn: $(grep -o 'execs: [0-9]*' "$log" | tail -1)"
  else
    echo "FAIL $pkg $fn"; tail -n 30 "$log"
    return 1
  fi
}
fail=0
while read -r pkg fn; do
  run "$pkg" "$fn" &
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || fail=1; done
done <<<"$targets"
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || fail=1; done
exit $fail
