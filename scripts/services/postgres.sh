#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server for cairn's tests (see docs/HELPERS-CONTRACT.md).
#
# State lives in $CAIRN_SERVICES_DIR/postgres. The server listens on 127.0.0.1 on a free
# port with scram-sha-256 password authentication; the superuser is "cairn".
# Prints on stdout (and only there):
#   CAIRN_TEST_PG_DSN        postgres://cairn:PW@127.0.0.1:PORT/postgres (superuser, may CREATE DATABASE)
#   CAIRN_TEST_PG_ADMIN_DSN  same as CAIRN_TEST_PG_DSN (the tests create their databases with it)
#   CAIRN_TEST_PG_BIN        directory holding pg_dump/psql of the server's major version
set -euo pipefail
. "$(dirname "$0")/lib.sh"

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "${CAIRN_SERVICES_DIR:-}" ] || die "CAIRN_SERVICES_DIR is not set"
[ -d "$CAIRN_SERVICES_DIR" ] || die "CAIRN_SERVICES_DIR=$CAIRN_SERVICES_DIR does not exist"

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN=$(find_bin)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
	export DEBIAN_FRONTEND=noninteractive
	if [ ! -e /tmp/cairn-apt-updated ]; then
		apt-get update >&2 && touch /tmp/cairn-apt-updated
	fi
	apt-get install -y --no-install-recommends postgresql postgresql-client >&2
	BIN=$(find_bin)
	[ -n "$BIN" ] && [ -x "$BIN/initdb" ] || die "initdb not found after installing postgresql"
fi

DIR="$CAIRN_SERVICES_DIR/postgres"
DATA="$DIR/data"
mkdir -p "$DIR"

# PostgreSQL refuses to run as root: run it as the "postgres" system user then.
RUN=()
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	chown postgres: "$DIR"
	# The server user must be able to reach its directory.
	if ! runuser -u postgres -- test -x "$DIR"; then
		chmod o+x "$CAIRN_SERVICES_DIR"
		runuser -u postgres -- test -x "$DIR" || die "user postgres cannot reach $DIR (check the permissions of its parents)"
	fi
	RUN=(runuser -u postgres --)
fi


PWFILE="$DIR/password"
if [ ! -s "$PWFILE" ]; then
	head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PWFILE"
	[ "${#RUN[@]}" -eq 0 ] || chown postgres: "$PWFILE"
	chmod 600 "$PWFILE"
fi
PW=$(cat "$PWFILE")

if [ ! -s "$DATA/PG_VERSION" ]; then
	log "initdb into $DATA"
	"${RUN[@]}" "$BIN/initdb" -D "$DATA" -U cairn --pwfile="$PWFILE" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
		{ cat "$DIR/initdb.log" >&2; die "initdb failed"; }
fi

PORT=$(free_port) || die "no free port found"
mkdir -p "$DIR/sock"
[ "${#RUN[@]}" -eq 0 ] || chown postgres: "$DIR/sock"

log "starting postgres on 127.0.0.1:$PORT"
if ! "${RUN[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 \
	-o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
	start >&2; then
	tail -n 30 "$DIR/server.log" >&2 || true
	die "postgres did not start (log: $DIR/server.log)"
fi

ok=
for _ in $(seq 1 60); do
	if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then ok=1; break; fi
	sleep 0.5
done
[ -n "$ok" ] || die "postgres does not answer on 127.0.0.1:$PORT (log: $DIR/server.log)"

head -n 1 "$DATA/postmaster.pid" >"$CAIRN_SERVICES_DIR/postgres.pids"

DSN="postgres://cairn:$PW@127.0.0.1:$PORT/postgres?sslmode=disable"
echo "export CAIRN_TEST_PG_DSN='$DSN'"
echo "export CAIRN_TEST_PG_ADMIN_DSN='$DSN'"
echo "export CAIRN_TEST_PG_BIN='$BIN'"
