#!/usr/bin/env bash
# Installs and starts everything cairn's tests need — PostgreSQL, MariaDB, MinIO and an
# OpenSSH server, all on 127.0.0.1 with throwaway state — then runs every test
# (race detector included), and each fuzz target briefly. This is the command CI runs
# (.ci/run) and the one README.md gives.
#
# Environment: FUZZTIME (per fuzz target; default a count of executions, see below),
# SKIP_SERVICES=1 to run without
# starting servers (their tests skip and say so).
set -euo pipefail
cd "$(dirname "$0")/.."

export CAIRN_SERVICES_DIR
CAIRN_SERVICES_DIR=$(mktemp -d /tmp/cairn-services.XXXXXX)
chmod 755 "$CAIRN_SERVICES_DIR"

cleanup() {
	for f in "$CAIRN_SERVICES_DIR"/*.pids; do
		[ -e "$f" ] || continue
		while read -r pid; do
			kill "$pid" 2>/dev/null || true
		done <"$f"
	done
	sleep 1
	rm -rf "$CAIRN_SERVICES_DIR" 2>/dev/null || true
}
trap cleanup EXIT

# Command-line tools the tests call: age (repository files open with the standard
# tool), zstd (version 2 blobs decode with the reference decoder), unzip and tar (dump
# archives list with the standard tools).
need=()
for tool in age zstd unzip; do
	command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ ! -e /tmp/cairn-apt-updated ]; then
		apt-get update >&2 && touch /tmp/cairn-apt-updated
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
fi

if [ "${SKIP_SERVICES:-}" != 1 ]; then
	for svc in postgres mariadb sshd minio smtp; do
		echo "== starting $svc" >&2
		if out=$(bash "scripts/services/$svc.sh"); then
			eval "$out"
		else
			echo "test-all: starting $svc failed" >&2
			exit 1
		fi
	done
fi

# Headless Chromium for the dashboard's browser tests.
if ! command -v chromium >/dev/null; then
	[ -e /tmp/cairn-apt-updated ] || { apt-get update >&2 && touch /tmp/cairn-apt-updated; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core >&2
fi

echo "== go vet" >&2
go vet ./...

echo "== go test -race" >&2
# The crash harness (cmd/cairn TestCrashConsistency) writes its kill counts here.
export CAIRN_CRASH_REPORT="$CAIRN_SERVICES_DIR/crash-harness.txt"
go test -race -timeout 25m -count=1 ./... 2>&1 | tee "$CAIRN_SERVICES_DIR/test.log"
status=${PIPESTATUS[0]}
[ "$status" = 0 ] || exit "$status"

# Fuzz budgets are counts of executions, not durations: with a duration, Go 1.26's
# fuzz coordinator sometimes fails a target with a bare "context deadline exceeded"
# as the time runs out, having found nothing (go.dev/issue/75804, fixed in Go 1.27).
# The counts take a few seconds each on the reference machine; FuzzRestorePaths
# restores a whole tree per execution and FuzzDecryptPackInPlace unwraps an age key,
# so they get fewer.
echo "== fuzz targets (${FUZZTIME:-a count} each)" >&2
go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		budget=${FUZZTIME:-}
		if [ -z "$budget" ]; then
			case $target in
			FuzzRestorePaths) budget=4000x ;;
			FuzzDecryptPackInPlace) budget=20000x ;; # an X25519 unwrap per input
			*) budget=100000x ;;
			esac
		fi
		echo "fuzz $pkg $target ($budget)" >&2
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "$pkg" >&2 || exit 1
	done
done || exit 1

passed=$(grep -c '^ok ' "$CAIRN_SERVICES_DIR/test.log" || true)
cat "$CAIRN_CRASH_REPORT" 2>/dev/null || echo "crash harness: no report (skipped?)"
echo "all tests passed: $passed packages ok"
