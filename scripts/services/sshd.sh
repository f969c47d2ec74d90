#!/usr/bin/env bash
# Starts a throw-away OpenSSH server with SFTP for cairn's tests (see
# docs/HELPERS-CONTRACT.md).
#
# State lives in $CAIRN_SERVICES_DIR/sshd: a fresh host key, a client key authorized for
# the current user (public-key login only, root included), a known_hosts file and a
# writable data directory. The server runs as the current user on 127.0.0.1:<free port>.
# Prints on stdout (and only there):
#   CAIRN_TEST_SFTP_ADDR         127.0.0.1:PORT
#   CAIRN_TEST_SFTP_USER         the login name
#   CAIRN_TEST_SFTP_KEY          private key file (no passphrase)
#   CAIRN_TEST_SFTP_KNOWN_HOSTS  known_hosts file holding the server's host key
#   CAIRN_TEST_SFTP_DIR          a writable base directory on the server
set -euo pipefail
. "$(dirname "$0")/lib.sh"

log() { echo "sshd.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "${CAIRN_SERVICES_DIR:-}" ] || die "CAIRN_SERVICES_DIR is not set"
[ -d "$CAIRN_SERVICES_DIR" ] || die "CAIRN_SERVICES_DIR=$CAIRN_SERVICES_DIR does not exist"

SSHD=/usr/sbin/sshd
if [ ! -x "$SSHD" ] || ! command -v ssh-keygen >/dev/null; then
	[ "$(id -u)" = 0 ] || die "openssh-server is missing and installing it needs root"
	export DEBIAN_FRONTEND=noninteractive
	if [ ! -e /tmp/cairn-apt-updated ]; then
		apt-get update >&2 && touch /tmp/cairn-apt-updated
	fi
	apt-get install -y --no-install-recommends openssh-server openssh-client >&2
	[ -x "$SSHD" ] || die "$SSHD not found after installing openssh-server"
fi

DIR="$CAIRN_SERVICES_DIR/sshd"
mkdir -p "$DIR/data"
chmod 700 "$DIR"


[ -s "$DIR/host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C cairn-test-host -f "$DIR/host_ed25519_key" >&2
[ -s "$DIR/client_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C cairn-test-client -f "$DIR/client_ed25519_key" >&2
cp "$DIR/client_ed25519_key.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys" "$DIR/host_ed25519_key" "$DIR/client_ed25519_key"

# Privilege separation needs this directory when sshd starts as root.
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi

PORT=$(free_port) || die "no free port found"
USER_NAME=$(id -un)

cat >"$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
AllowUsers $USER_NAME
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
# The key lives under CAIRN_SERVICES_DIR, usually below the world-writable /tmp.
StrictModes no
UsePAM no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel INFO
CONF

"$SSHD" -t -f "$DIR/sshd_config" >&2 || die "sshd rejects its configuration $DIR/sshd_config"

log "starting sshd on 127.0.0.1:$PORT"
nohup "$SSHD" -D -e -f "$DIR/sshd_config" >"$DIR/server.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$CAIRN_SERVICES_DIR/sshd.pids"

ok=
for _ in $(seq 1 60); do
	if ! kill -0 "$PID" 2>/dev/null; then
		tail -n 30 "$DIR/server.log" >&2 || true
		die "sshd exited during startup (log: $DIR/server.log)"
	fi
	if banner=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && head -c 8 <&3" 2>/dev/null) &&
		[ "$banner" = "SSH-2.0-" ]; then
		ok=1
		break
	fi
	sleep 0.5
done
if [ -z "$ok" ]; then
	kill "$PID" 2>/dev/null || true
	tail -n 30 "$DIR/server.log" >&2 || true
	die "sshd does not answer on 127.0.0.1:$PORT after 30s (log: $DIR/server.log)"
fi

echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_ed25519_key.pub")" >"$DIR/known_hosts"

# Check a real key login with the ssh client when it is available.
if command -v ssh >/dev/null; then
	if ! ssh -q -F none -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
		-o UserKnownHostsFile="$DIR/known_hosts" -o StrictHostKeyChecking=yes \
		-i "$DIR/client_ed25519_key" -p "$PORT" "$USER_NAME@127.0.0.1" true </dev/null >&2; then
		kill "$PID" 2>/dev/null || true
		tail -n 30 "$DIR/server.log" >&2 || true
		die "key login to 127.0.0.1:$PORT as $USER_NAME failed (log: $DIR/server.log)"
	fi
fi
log "sshd ready (pid $PID)"

echo "export CAIRN_TEST_SFTP_ADDR='127.0.0.1:$PORT'"
echo "export CAIRN_TEST_SFTP_USER='$USER_NAME'"
echo "export CAIRN_TEST_SFTP_KEY='$DIR/client_ed25519_key'"
echo "export CAIRN_TEST_SFTP_KNOWN_HOSTS='$DIR/known_hosts'"
echo "export CAIRN_TEST_SFTP_DIR='$DIR/data'"
