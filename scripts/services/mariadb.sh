#!/usr/bin/env bash
# Starts a throw-away MariaDB server for cairn's tests (see docs/HELPERS-CONTRACT.md).
#
# State lives in $CAIRN_SERVICES_DIR/mariadb (data, socket, pid, log). The server listens
# on 127.0.0.1 on a free port; a user "cairn" with a password and all privileges exists.
# Prints on stdout (and only there):
#   CAIRN_TEST_MYSQL_DSN  mysql://cairn:PW@127.0.0.1:PORT/cairn (the user may CREATE DATABASE)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

log() { echo "mariadb.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "${CAIRN_SERVICES_DIR:-}" ] || die "CAIRN_SERVICES_DIR is not set"
[ -d "$CAIRN_SERVICES_DIR" ] || die "CAIRN_SERVICES_DIR=$CAIRN_SERVICES_DIR does not exist"

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
	export DEBIAN_FRONTEND=noninteractive
	if [ ! -e /tmp/cairn-apt-updated ]; then
		apt-get update >&2 && touch /tmp/cairn-apt-updated
	fi
	apt-get install -y --no-install-recommends mariadb-server mariadb-client >&2
fi
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[ -x "$MARIADBD" ] || die "mariadbd not found after installing mariadb-server"
command -v mariadb >/dev/null 2>&1 || die "mariadb client not found"

DIR="$CAIRN_SERVICES_DIR/mariadb"
DATA="$DIR/data"
SOCK="$DIR/mariadb.sock"
mkdir -p "$DIR"

USER_OPT=()
if [ "$(id -u)" = 0 ]; then
	id mysql >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin mysql
	chown mysql: "$DIR"
	if ! runuser -u mysql -- test -x "$DIR"; then
		chmod o+x "$CAIRN_SERVICES_DIR"
		runuser -u mysql -- test -x "$DIR" || die "user mysql cannot reach $DIR (check the permissions of its parents)"
	fi
	USER_OPT=(--user=mysql)
fi


PWFILE="$DIR/password"
if [ ! -s "$PWFILE" ]; then
	head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PWFILE"
	chmod 600 "$PWFILE"
fi
PW=$(cat "$PWFILE")

FRESH=
if [ ! -d "$DATA/mysql" ]; then
	log "mariadb-install-db into $DATA"
	mariadb-install-db --no-defaults "${USER_OPT[@]}" --datadir="$DATA" \
		--auth-root-authentication-method=socket --skip-test-db >"$DIR/install.log" 2>&1 ||
		{ cat "$DIR/install.log" >&2; die "mariadb-install-db failed"; }
	FRESH=1
fi

PORT=$(free_port) || die "no free port found"
log "starting mariadbd on 127.0.0.1:$PORT"
setsid "$MARIADBD" --no-defaults "${USER_OPT[@]}" --datadir="$DATA" --socket="$SOCK" \
	--port="$PORT" --bind-address=127.0.0.1 --pid-file="$DIR/mariadbd.pid" \
	--log-error="$DIR/server.log" --skip-name-resolve --innodb-flush-log-at-trx-commit=0 \
	--innodb-buffer-pool-size=256M </dev/null >/dev/null 2>&1 &
PID=$!
echo "$PID" >"$CAIRN_SERVICES_DIR/mariadb.pids"

ok=
for _ in $(seq 1 120); do
	if mariadb-admin --no-defaults --socket="$SOCK" -uroot ping >/dev/null 2>&1; then ok=1; break; fi
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.5
done
if [ -z "$ok" ]; then
	tail -n 30 "$DIR/server.log" >&2 || true
	die "mariadbd does not answer on $SOCK (log: $DIR/server.log)"
fi

if [ -n "$FRESH" ]; then
	mariadb --no-defaults --socket="$SOCK" -uroot <<SQL || die "creating user cairn failed"
CREATE USER 'cairn'@'127.0.0.1' IDENTIFIED BY '$PW';
CREATE USER 'cairn'@'localhost' IDENTIFIED BY '$PW';
GRANT ALL PRIVILEGES ON *.* TO 'cairn'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'cairn'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS cairn;
FLUSH PRIVILEGES;
SQL
fi

echo "export CAIRN_TEST_MYSQL_DSN='mysql://cairn:$PW@127.0.0.1:$PORT/cairn'"
