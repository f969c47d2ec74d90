#!/usr/bin/env bash
# Starts a throw-away SMTP server (Debian's exim4-daemon-light) for the notification
# tests of cairn serve (see docs/HELPERS-CONTRACT.md).
#
# State lives in $CAIRN_SERVICES_DIR/smtp: a test CA and a server certificate for
# 127.0.0.1/localhost, the exim configuration, its spool and log, and a maildir that
# receives every accepted message. The server listens on 127.0.0.1:<free port>, offers
# STARTTLS, and offers AUTH PLAIN/LOGIN only after STARTTLS; it relays nothing without
# authentication and delivers every authenticated message, whatever the recipient, into
# the maildir.
# Prints on stdout (and only there):
#   CAIRN_TEST_SMTP_ADDR      127.0.0.1:PORT
#   CAIRN_TEST_SMTP_USER      the login name
#   CAIRN_TEST_SMTP_PASSWORD  its password
#   CAIRN_TEST_SMTP_CA        PEM file of the CA that signed the server certificate
#   CAIRN_TEST_SMTP_MAILDIR   maildir holding the delivered messages (new/ and cur/)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

log() { echo "smtp.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "${CAIRN_SERVICES_DIR:-}" ] || die "CAIRN_SERVICES_DIR is not set"
[ -d "$CAIRN_SERVICES_DIR" ] || die "CAIRN_SERVICES_DIR=$CAIRN_SERVICES_DIR does not exist"

EXIM=/usr/sbin/exim4
if [ ! -x "$EXIM" ] || ! command -v openssl >/dev/null; then
	[ "$(id -u)" = 0 ] || die "exim4-daemon-light is missing and installing it needs root"
	export DEBIAN_FRONTEND=noninteractive
	if [ ! -e /tmp/cairn-apt-updated ]; then
		apt-get update >&2 && touch /tmp/cairn-apt-updated
	fi
	apt-get install -y --no-install-recommends exim4-daemon-light openssl >&2
	[ -x "$EXIM" ] || die "$EXIM not found after installing exim4-daemon-light"
fi

DIR="$CAIRN_SERVICES_DIR/smtp"
mkdir -p "$DIR/spool" "$DIR/log" "$DIR/maildir/new" "$DIR/maildir/cur" "$DIR/maildir/tmp"

# Exim never delivers as root: as root, the daemon and deliveries run as its system
# user; otherwise as the current user.
if [ "$(id -u)" = 0 ]; then
	RUN_USER=Debian-exim
	id "$RUN_USER" >/dev/null 2>&1 || die "user $RUN_USER is missing (reinstall exim4-base)"
	RUN_GROUP=$(id -gn "$RUN_USER")
	# The exim user must reach its spool under CAIRN_SERVICES_DIR.
	chmod o+x "$CAIRN_SERVICES_DIR"
else
	RUN_USER=$(id -un)
	RUN_GROUP=$(id -gn)
fi


# A test CA and a server certificate it signs, valid for 127.0.0.1 and localhost.
if [ ! -s "$DIR/ca.pem" ] || [ ! -s "$DIR/server.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=cairn test SMTP CA" \
		-keyout "$DIR/ca.key" -out "$DIR/ca.pem" >&2 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$DIR/server.key" -out "$DIR/server.csr" >&2 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$DIR/server.ext"
	openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
		-days 3 -extfile "$DIR/server.ext" -out "$DIR/server.pem" >&2 2>/dev/null
fi
[ -s "$DIR/server.pem" ] || die "could not create the test certificate"

USER_NAME=cairn
PWFILE="$DIR/password"
[ -s "$PWFILE" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PWFILE"
chmod 600 "$PWFILE"
PW=$(cat "$PWFILE")

PORT=$(free_port) || die "no free port found"

cat >"$DIR/exim.conf" <<CONF
# cairn test SMTP server (scripts/services/smtp.sh)
primary_hostname = cairn-test.localhost
exim_user = $RUN_USER
exim_group = $RUN_GROUP
spool_directory = $DIR/spool
log_file_path = $DIR/log/%slog
keep_environment =
local_interfaces = 127.0.0.1
daemon_smtp_ports = $PORT
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts = *
tls_certificate = $DIR/server.pem
tls_privatekey = $DIR/server.key
acl_smtp_rcpt = acl_rcpt
message_size_limit = 10M
timeout_frozen_after = 1h

begin acl
acl_rcpt:
  accept authenticated = *
  deny message = authentication required

begin routers
everything:
  driver = accept
  transport = to_maildir

begin transports
to_maildir:
  driver = appendfile
  directory = $DIR/maildir
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  user = $RUN_USER
  group = $RUN_GROUP
  mode = 0644

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_advertise_condition = \${if def:tls_in_cipher}
  server_prompts = :
  server_condition = \${if and {{eq{\$auth2}{$USER_NAME}}{eq{\$auth3}{$PW}}}}
  server_set_id = \$auth2
login:
  driver = plaintext
  public_name = LOGIN
  server_advertise_condition = \${if def:tls_in_cipher}
  server_prompts = Username:: : Password::
  server_condition = \${if and {{eq{\$auth1}{$USER_NAME}}{eq{\$auth2}{$PW}}}}
  server_set_id = \$auth1
CONF
chmod 644 "$DIR/exim.conf"
chmod 644 "$DIR/server.pem" "$DIR/ca.pem"
chmod 640 "$DIR/server.key"
chown -R "$RUN_USER:$RUN_GROUP" "$DIR/spool" "$DIR/log" "$DIR/maildir"
chgrp "$RUN_GROUP" "$DIR/server.key"
chmod 755 "$DIR"

"$EXIM" -C "$DIR/exim.conf" -bV >"$DIR/check.log" 2>&1 || { cat "$DIR/check.log" >&2; die "exim rejects $DIR/exim.conf"; }

log "starting exim on 127.0.0.1:$PORT"
nohup "$EXIM" -C "$DIR/exim.conf" -bdf -oP "$DIR/exim.pid" >"$DIR/server.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$CAIRN_SERVICES_DIR/smtp.pids"

ok=
for _ in $(seq 1 60); do
	if ! kill -0 "$PID" 2>/dev/null; then
		tail -n 30 "$DIR/server.log" "$DIR/log/paniclog" "$DIR/log/mainlog" >&2 2>/dev/null || true
		die "exim exited during startup (logs: $DIR/server.log, $DIR/log)"
	fi
	if banner=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && head -c 4 <&3" 2>/dev/null) &&
		[ "$banner" = "220 " ]; then
		ok=1
		break
	fi
	sleep 0.5
done
if [ -z "$ok" ]; then
	kill "$PID" 2>/dev/null || true
	tail -n 30 "$DIR/server.log" "$DIR/log/mainlog" >&2 2>/dev/null || true
	die "exim does not answer on 127.0.0.1:$PORT after 30s (logs: $DIR/server.log, $DIR/log)"
fi
log "exim ready (pid $PID)"

echo "export CAIRN_TEST_SMTP_ADDR='127.0.0.1:$PORT'"
echo "export CAIRN_TEST_SMTP_USER='$USER_NAME'"
echo "export CAIRN_TEST_SMTP_PASSWORD='$PW'"
echo "export CAIRN_TEST_SMTP_CA='$DIR/ca.pem'"
echo "export CAIRN_TEST_SMTP_MAILDIR='$DIR/maildir'"
