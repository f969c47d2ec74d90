#!/usr/bin/env bash
# Starts a throw-away MinIO (S3) server for cairn's tests (see docs/HELPERS-CONTRACT.md).
#
# State lives in $CAIRN_SERVICES_DIR/minio (data in .../minio/data). The server listens on
# 127.0.0.1 on a free port with a random root user and password. Single-drive MinIO
# supports versioning, so tests may create buckets with object locking.
# Prints on stdout (and only there):
#   CAIRN_TEST_S3_ENDPOINT    http://127.0.0.1:PORT
#   CAIRN_TEST_S3_ACCESS_KEY  root user
#   CAIRN_TEST_S3_SECRET_KEY  root password
#   CAIRN_TEST_S3_REGION      us-east-1
#   CAIRN_TEST_MINIO_BIN      the minio binary
#   CAIRN_TEST_MINIO_DATA     the data directory
#   CAIRN_TEST_MINIO_PORT     the port
# A test restarts the server after killing it with
#   MINIO_ROOT_USER=$ACCESS MINIO_ROOT_PASSWORD=$SECRET $BIN server --address 127.0.0.1:$PORT $DATA
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Pinned: MinIO publishes no semver tags, so this is the pseudo-version of a master
# commit (2026-02-12) that builds with go1.26.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

log() { echo "minio.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "${CAIRN_SERVICES_DIR:-}" ] || die "CAIRN_SERVICES_DIR is not set"
[ -d "$CAIRN_SERVICES_DIR" ] || die "CAIRN_SERVICES_DIR=$CAIRN_SERVICES_DIR does not exist"
command -v go >/dev/null || die "go is not in PATH"

BIN="$(go env GOPATH)/bin/minio"
if [ ! -x "$BIN" ]; then
	log "installing github.com/minio/minio@$MINIO_VERSION (takes several minutes)"
	go install "github.com/minio/minio@$MINIO_VERSION" >&2 || die "go install minio failed"
	[ -x "$BIN" ] || die "minio not found at $BIN after go install"
fi

DIR="$CAIRN_SERVICES_DIR/minio"
DATA="$DIR/data"
mkdir -p "$DATA"


CREDS="$DIR/credentials"
if [ ! -s "$CREDS" ]; then
	(
		umask 077
		echo "cairn$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$CREDS"
		head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >>"$CREDS"
		echo >>"$CREDS"
	)
fi
ACCESS=$(sed -n 1p "$CREDS")
SECRET=$(sed -n 2p "$CREDS")

PORT=$(free_port) || die "no free port found"
CONSOLE_PORT=$(free_port) || die "no free port found"
while [ "$CONSOLE_PORT" = "$PORT" ]; do CONSOLE_PORT=$(free_port) || die "no free port found"; done

log "starting minio on 127.0.0.1:$PORT with data in $DATA"
MINIO_ROOT_USER="$ACCESS" MINIO_ROOT_PASSWORD="$SECRET" MINIO_BROWSER=off MINIO_UPDATE=off \
	MINIO_CI_CD=1 nohup "$BIN" server --quiet --address "127.0.0.1:$PORT" \
	--console-address "127.0.0.1:$CONSOLE_PORT" "$DATA" >"$DIR/server.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$CAIRN_SERVICES_DIR/minio.pids"

ok=
for _ in $(seq 1 120); do
	if ! kill -0 "$PID" 2>/dev/null; then
		tail -n 30 "$DIR/server.log" >&2 || true
		die "minio exited during startup (log: $DIR/server.log)"
	fi
	if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/minio/health/ready" 2>/dev/null; then ok=1; break; fi
	sleep 0.5
done
if [ -z "$ok" ]; then
	kill "$PID" 2>/dev/null || true
	tail -n 30 "$DIR/server.log" >&2 || true
	die "minio does not answer on 127.0.0.1:$PORT after 60s (log: $DIR/server.log)"
fi
log "minio ready (pid $PID)"

echo "export CAIRN_TEST_S3_ENDPOINT='http://127.0.0.1:$PORT'"
echo "export CAIRN_TEST_S3_ACCESS_KEY='$ACCESS'"
echo "export CAIRN_TEST_S3_SECRET_KEY='$SECRET'"
echo "export CAIRN_TEST_S3_REGION='us-east-1'"
echo "export CAIRN_TEST_MINIO_BIN='$BIN'"
echo "export CAIRN_TEST_MINIO_DATA='$DATA'"
echo "export CAIRN_TEST_MINIO_PORT='$PORT'"
