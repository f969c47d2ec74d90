#!/usr/bin/env bash
# Day-over-day repository growth per database engine (issue 3).
#
#   bash bench/dbgrowth/run.sh               # all engines, 100k rows (~220 MB of text)
#   ENGINES="sqlite" ROWS=10000 bash bench/dbgrowth/run.sh   # quick look
#
# For each engine (sqlite, postgres, mysql = MariaDB) it creates a documents table
# (id, title, ~2.2 KB of English-like content, created, modified) with $ROWS rows, backs
# it up with cairn (day 1), then measures the growth of the repository for two day-2
# scenarios, each starting from the day-1 state and repository:
#   paperless   1% new rows, 36 edits to recent rows, 12 deletions
#   random1pct  edits to 1% of the rows, chosen uniformly
# Growth = bytes_added_stored of `cairn backup --json` (also du -sb of the repository).
# Changed text = title+content bytes of the inserted and edited rows.
# PostgreSQL and MariaDB are started with scripts/services/*.sh and stopped at the end.
# The markdown table goes to $WORK/results.md and standard output.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/dbgrowth}
ROWS=${ROWS:-100000}
ENGINES=${ENGINES:-"sqlite postgres mysql"}
CAIRN=$WORK/cairn
GEN=$WORK/dbgrowth-gen

log() { echo "[$(date +%T)] $*" >&2; }

mkdir -p "$WORK"
log "building cairn and the generator"
(cd "$ROOT" && go build -o "$CAIRN" ./cmd/cairn && go build -o "$GEN" ./bench/dbgrowth)

export CAIRN_SERVICES_DIR=${CAIRN_SERVICES_DIR:-$(mktemp -d)}
stop_services() {
	local f
	for f in "$CAIRN_SERVICES_DIR"/*.pids; do
		[ -e "$f" ] && kill $(cat "$f") 2>/dev/null || true
	done
}
trap stop_services EXIT
case " $ENGINES " in *" postgres "*)
	eval "$(bash "$ROOT/scripts/services/postgres.sh")"
	export PATH="$CAIRN_TEST_PG_BIN:$PATH" ;;
esac
case " $ENGINES " in *" mysql "*)
	eval "$(bash "$ROOT/scripts/services/mariadb.sh")" ;;
esac

# --- per-engine database operations ------------------------------------------------
pg_dsn() { echo "${CAIRN_TEST_PG_DSN/\/postgres\?//$1?}"; }
my_cnf() { # client option file from CAIRN_TEST_MYSQL_DSN (mysql://user:pass@host:port/db)
	local rest=${CAIRN_TEST_MYSQL_DSN#mysql://} user pass hostport
	user=${rest%%:*}; rest=${rest#*:}; pass=${rest%%@*}; rest=${rest#*@}; hostport=${rest%%/*}
	printf '[client]\nuser=%s\npassword=%s\nhost=%s\nport=%s\n' "$user" "$pass" "${hostport%:*}" "${hostport#*:}" >"$1"
	chmod 600 "$1"
}
my() { mariadb --defaults-extra-file="$E/my.cnf" "$@"; }

db_create() {
	case $engine in
	sqlite) rm -f "$E/db.sqlite3" ;;
	postgres)
		psql -q "$CAIRN_TEST_PG_DSN" -c "DROP DATABASE IF EXISTS dbgrowth" -c "DROP DATABASE IF EXISTS dbgrowth_day1" -c "CREATE DATABASE dbgrowth" ;;
	mysql)
		my_cnf "$E/my.cnf"
		my -e "DROP DATABASE IF EXISTS dbgrowth; DROP DATABASE IF EXISTS dbgrowth_day1; CREATE DATABASE dbgrowth; CREATE DATABASE dbgrowth_day1" ;;
	esac
}
db_step() { # step changed-file
	case $engine in
	sqlite) "$GEN" -engine sqlite -target "$E/db.sqlite3" -rows "$ROWS" -step "$1" -changed "$2" ;;
	postgres) "$GEN" -engine postgres -target "$(pg_dsn dbgrowth)" -rows "$ROWS" -step "$1" -changed "$2" ;;
	mysql) "$GEN" -engine mysql -rows "$ROWS" -step "$1" -changed "$2" | my dbgrowth ;;
	esac
}
db_save_day1() {
	case $engine in
	sqlite) cp "$E/db.sqlite3" "$E/day1.sqlite3" ;;
	postgres) psql -q "$CAIRN_TEST_PG_DSN" -c "CREATE DATABASE dbgrowth_day1 TEMPLATE dbgrowth" ;;
	mysql) my -e "CREATE TABLE dbgrowth_day1.documents LIKE dbgrowth.documents; INSERT INTO dbgrowth_day1.documents SELECT * FROM dbgrowth.documents" ;;
	esac
}
db_restore_day1() {
	case $engine in
	sqlite) mv "$E/day1.sqlite3" "$E/db.sqlite3" ;;
	postgres) psql -q "$CAIRN_TEST_PG_DSN" -c "DROP DATABASE dbgrowth" -c "ALTER DATABASE dbgrowth_day1 RENAME TO dbgrowth" ;;
	mysql) my -e "DROP TABLE dbgrowth.documents; RENAME TABLE dbgrowth_day1.documents TO dbgrowth.documents" ;;
	esac
}
db_conf() {
	case $engine in
	sqlite) printf 'engine = "sqlite"\npath = "%s"\n' "$E/db.sqlite3" ;;
	postgres) printf 'engine = "postgres"\ndsn = "%s"\n' "$(pg_dsn dbgrowth)" ;;
	mysql) printf 'engine = "mysql"\ndsn = "%s"\n' "${CAIRN_TEST_MYSQL_DSN%/*}/dbgrowth" ;;
	esac
}
write_cfg() { # file repo cache
	cat >"$1" <<EOF
repository = "$2"
password_file = "$E/pw"
cache_dir = "$3"

[app]
name = "dbgrowth-$engine"
paths = ["$E/media"]
version = { literal = "1" }

[database]
$(db_conf)
EOF
}
backup() { # config json-out
	"$CAIRN" --config "$1" backup --json >"$2"
}
jget() { jq -r ".$2" "$1"; }

RESULTS=$WORK/results.md
{
	echo "| engine | scenario | DB dump size (day 1) | changed text | repo growth (stored) | ratio | repo growth (du -sb) | day-2 backup time |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} >"$RESULTS"
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

for engine in $ENGINES; do
	E=$WORK/$engine
	rm -rf "$E"
	mkdir -p "$E/media"
	echo benchpw >"$E/pw"
	log "$engine: creating $ROWS rows"
	db_create
	db_step init "$E/changed-init"
	write_cfg "$E/paperless.toml" "$E/repo" "$E/cache-paperless"
	"$CAIRN" --config "$E/paperless.toml" init --kdf-work-factor 10 >/dev/null
	log "$engine: day-1 backup"
	backup "$E/paperless.toml" "$E/day1.json"
	size1=$(jget "$E/day1.json" bytes_read) # the dump (the media dir is empty)
	du1=$(du -sb "$E/repo" | cut -f1)
	log "$engine: day 1: $(mb "$size1") dumped, $(mb "$(jget "$E/day1.json" bytes_added_stored)") stored"
	cp -a "$E/repo" "$E/repo-random1pct"
	db_save_day1
	for scenario in paperless random1pct; do
		if [ "$scenario" = random1pct ]; then
			db_restore_day1
			write_cfg "$E/random1pct.toml" "$E/repo-random1pct" "$E/cache-random1pct"
			cfg=$E/random1pct.toml repo=$E/repo-random1pct step=random
		else
			cfg=$E/paperless.toml repo=$E/repo step=paperless
		fi
		log "$engine: $scenario day"
		db_step "$step" "$E/changed-$scenario"
		backup "$cfg" "$E/day2-$scenario.json"
		changed=$(cat "$E/changed-$scenario")
		stored=$(jget "$E/day2-$scenario.json" bytes_added_stored)
		du2=$(du -sb "$repo" | cut -f1)
		secs=$(jget "$E/day2-$scenario.json" duration_seconds)
		ratio=$(awk -v s="$stored" -v c="$changed" 'BEGIN { printf "%.2f", s / c }')
		log "$engine: $scenario: changed $(mb "$changed"), stored $(mb "$stored"), ratio $ratio"
		printf '| %s | %s | %s | %s | %s | %s | %s | %.1f s |\n' "$engine" "$scenario" "$(mb "$size1")" \
			"$(mb "$changed")" "$(mb "$stored")" "$ratio" "$(mb $((du2 - du1)))" "$secs" >>"$RESULTS"
	done
	# Free the disk space before the next engine.
	rm -rf "$E/repo" "$E/repo-random1pct" "$E/db.sqlite3" "$E"/cache-*
	case $engine in
	postgres) psql -q "$CAIRN_TEST_PG_DSN" -c "DROP DATABASE IF EXISTS dbgrowth" ;;
	mysql) my -e "DROP DATABASE IF EXISTS dbgrowth; DROP DATABASE IF EXISTS dbgrowth_day1" ;;
	esac
done

cat "$RESULTS"
