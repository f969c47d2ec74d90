#!/usr/bin/env bash
# Backup and restore throughput of cairn to remote repositories (MinIO over S3, and
# sshd over SFTP when available), next to a local directory, on the same data.
#
#   bash bench/remote/run.sh
#
# Environment (all optional):
#   SCALE=0.25        bench/gen docs data-set scale (0.25: ~480 MB)
#   WORK=/tmp/cairn-bench-remote   work dir (data, local repositories, cache, logs)
#   TARGETS="local s3 sftp"        which repositories to measure
#   CAIRN_TEST_S3_* / CAIRN_TEST_SFTP_*  the servers (scripts/services/{minio,sshd}.sh);
#                     without them this script starts its own with those scripts
#   CAIRN_BIN=/path/to/cairn       use this binary instead of building ./cmd/cairn
#
# For each target: init, a first backup (everything is new), a second backup of the
# unchanged data (parent snapshot, cache warm), a full restore with a cold cache and
# a single-file restore. Prints a Markdown table on stdout; docs/PERFORMANCE.md
# §Remote backends holds the figures measured on the reference machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCALE=${SCALE:-0.25}
WORK=${WORK:-/tmp/cairn-bench-remote}
TARGETS=${TARGETS:-local s3 sftp}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [ -n "$(ls -A "$WORK")" ] && [ ! -e "$WORK/.cairn-bench-remote" ]; then
	die "$WORK is not empty and is not a cairn remote bench work dir; set WORK to a new directory"
fi
touch "$WORK/.cairn-bench-remote"

STARTED_PIDS=()
cleanup() {
	for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# ---------------------------------------------------------------- servers
if [[ " $TARGETS " == *" s3 "* || " $TARGETS " == *" sftp "* ]]; then
	if [ -z "${CAIRN_SERVICES_DIR:-}" ]; then
		export CAIRN_SERVICES_DIR="$WORK/services"
		mkdir -p "$CAIRN_SERVICES_DIR"
	fi
fi
if [[ " $TARGETS " == *" s3 "* && -z "${CAIRN_TEST_S3_ENDPOINT:-}" ]]; then
	log "starting MinIO (scripts/services/minio.sh)"
	eval "$(bash "$ROOT/scripts/services/minio.sh")"
	STARTED_PIDS+=("$(cat "$CAIRN_SERVICES_DIR/minio.pids")")
fi
if [[ " $TARGETS " == *" sftp "* && -z "${CAIRN_TEST_SFTP_ADDR:-}" ]]; then
	log "starting sshd (scripts/services/sshd.sh)"
	if out=$(bash "$ROOT/scripts/services/sshd.sh"); then
		eval "$out"
		STARTED_PIDS+=("$(cat "$CAIRN_SERVICES_DIR/sshd.pids")")
	else
		log "no sshd: skipping sftp"
		TARGETS=${TARGETS//sftp/}
	fi
fi

# ---------------------------------------------------------------- binary and data
if [ -z "${CAIRN_BIN:-}" ]; then
	log "building cairn"
	(cd "$ROOT" && go build -o "$WORK/cairn" ./cmd/cairn) || die "go build failed"
	CAIRN_BIN="$WORK/cairn"
fi
DATA="$WORK/data-docs-$SCALE"
if [ ! -d "$DATA" ]; then
	log "generating docs data set, scale $SCALE"
	(cd "$ROOT" && go run ./bench/gen -kind docs -scale "$SCALE" -out "$DATA") >&2 || die "bench/gen failed"
fi
BYTES=$(du -sb "$DATA" | cut -f1)
ONE=$(find "$DATA" -type f -size +900k -size -2M | sort | head -n 1)
[ -n "$ONE" ] || ONE=$(find "$DATA" -type f | sort | head -n 1)
ONE_BYTES=$(stat -c %s "$ONE")
log "data: $DATA, $((BYTES / 1000000)) MB; single file $ONE ($ONE_BYTES bytes)"

PW="$WORK/password"
echo "remote bench passphrase" >"$PW"
RUN_ID=$(date +%s)

now() { date +%s.%N; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f MB/s (%.1f s)", b / 1e6 / s, s }'; }

rows=()
measure() { # measure TARGET LOCATION
	local target=$1 loc=$2
	local cfg="$WORK/cairn-$target.toml" cache="$WORK/cache-$target" t0 t1 t2 t3 t4 t5 t6 t7 b1 b2 r1 r2
	{
		echo "repository = \"$loc\""
		echo "cache_dir = \"$cache\""
		printf '[app]\nname = "bench"\npaths = ["%s"]\nversion = { literal = "1" }\n' "$DATA"
		if [ -n "${CAIRN_TEST_S3_ACCESS_KEY:-}" ]; then
			printf '[s3]\naccess_key_id = "%s"\nsecret_access_key = "%s"\nregion = "%s"\n' \
				"$CAIRN_TEST_S3_ACCESS_KEY" "$CAIRN_TEST_S3_SECRET_KEY" "${CAIRN_TEST_S3_REGION:-us-east-1}"
		fi
		if [ -n "${CAIRN_TEST_SFTP_KEY:-}" ]; then
			printf '[sftp]\nkey_file = "%s"\nknown_hosts = "%s"\n' "$CAIRN_TEST_SFTP_KEY" "$CAIRN_TEST_SFTP_KNOWN_HOSTS"
		fi
	} >"$cfg"
	local c=("$CAIRN_BIN" --config "$cfg" --password-file "$PW" --repo "$loc")
	rm -rf "$cache" "$WORK/restore-$target" "$WORK/one-$target"
	log "$target: init $loc"
	"${c[@]}" init --kdf-work-factor 10 >/dev/null || die "$target: init failed"
	log "$target: first backup"
	t0=$(now)
	"${c[@]}" backup -q "$DATA" || die "$target: backup failed"
	t1=$(now)
	log "$target: second backup (unchanged)"
	"${c[@]}" backup -q "$DATA" || die "$target: second backup failed"
	t2=$(now)
	rm -rf "$cache"
	log "$target: full restore (cold cache)"
	t3=$(now)
	"${c[@]}" restore -q latest --target "$WORK/restore-$target" || die "$target: restore failed"
	t4=$(now)
	diff -r -q "$DATA" "$WORK/restore-$target$DATA" >/dev/null || die "$target: restored data differs"
	log "$target: single-file restore"
	t5=$(now)
	"${c[@]}" restore -q latest --target "$WORK/one-$target" --include "$ONE" || die "$target: single-file restore failed"
	t6=$(now)
	cmp -s "$ONE" "$WORK/one-$target$ONE" || die "$target: restored file differs"
	"${c[@]}" snapshots >/dev/null
	t7=$(now)
	b1=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
	b2=$(awk -v a="$t1" -v b="$t2" 'BEGIN{print b-a}')
	r1=$(awk -v a="$t3" -v b="$t4" 'BEGIN{print b-a}')
	r2=$(awk -v a="$t5" -v b="$t6" 'BEGIN{print b-a}')
	local ls
	ls=$(awk -v a="$t6" -v b="$t7" 'BEGIN{printf "%.2f s", b-a}')
	rows+=("| $target | $(mbps "$BYTES" "$b1") | $(awk -v s="$b2" 'BEGIN{printf "%.1f s", s}') | $(mbps "$BYTES" "$r1") | $(awk -v s="$r2" 'BEGIN{printf "%.2f s", s}') | $ls |")
	rm -rf "$WORK/restore-$target" "$WORK/one-$target"
}

for target in $TARGETS; do
	case $target in
	local)
		rm -rf "$WORK/repo-local"
		measure local "$WORK/repo-local"
		;;
	s3) measure s3 "s3:$CAIRN_TEST_S3_ENDPOINT/cairn-bench-$RUN_ID/repo" ;;
	sftp) measure sftp "sftp://$CAIRN_TEST_SFTP_USER@$CAIRN_TEST_SFTP_ADDR$CAIRN_TEST_SFTP_DIR/cairn-bench-$RUN_ID" ;;
	*) die "unknown target $target (local, s3, sftp)" ;;
	esac
done

echo "Data: bench/gen -kind docs -scale $SCALE, $((BYTES / 1000000)) MB; single file $((ONE_BYTES / 1000)) kB."
echo
echo "| repository | first backup | unchanged backup | full restore (cold cache) | one-file restore | snapshots (remote: cache warm) |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
