#!/usr/bin/env bash
# Side-by-side benchmark of cairn, restic and borg on generated data sets.
#
#   bash bench/run.sh           full run (SCALE=1: ~1.9 GB docs + ~0.22 GB small files)
#   bash bench/run.sh --quick   smoke run (SCALE=0.05)
#
# Environment (all optional):
#   SCALE=1               data-set scale (--quick: 0.05)
#   WORK=/tmp/cairn-bench work dir for data, repositories, logs (--quick: /tmp/cairn-bench-quick)
#   SEED=1                data-set seed;  MUTATE_SEED=2  seed of the simulated day
#   DATASETS="docs small" TOOLS="cairn restic borg"
#   BORG_COMPRESSION=zstd,3
#   CAIRN_BIN=/path/to/cairn  use this binary instead of building ./cmd/cairn
#   RESULTS=bench/RESULTS.md (--quick: bench/RESULTS-quick.md)
#
# See bench/README.md for what is measured.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	-h | --help)
		sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $arg (use --quick or --help)" >&2
		exit 2
		;;
	esac
done
if ((QUICK)); then
	SCALE=${SCALE:-0.05}
	WORK=${WORK:-/tmp/cairn-bench-quick}
	RESULTS=${RESULTS:-$ROOT/bench/RESULTS-quick.md}
fi
SCALE=${SCALE:-1}
WORK=${WORK:-/tmp/cairn-bench}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
SEED=${SEED:-1}
MUTATE_SEED=${MUTATE_SEED:-2}
DATASETS=${DATASETS:-docs small}
TOOLS=${TOOLS:-cairn restic borg}
BORG_COMPRESSION=${BORG_COMPRESSION:-zstd,3}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ---------------------------------------------------------------- work dir
WORK=$(mkdir -p "$WORK" && cd "$WORK" && pwd) || die "cannot create $WORK"
if [ -n "$(ls -A "$WORK")" ] && [ ! -e "$WORK/.cairn-bench" ]; then
	die "$WORK is not empty and is not a cairn bench work dir; set WORK to a new directory"
fi
# One run per work dir at a time: a second run would delete this one's data.
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench/run.sh is using $WORK (set WORK to another directory)"
# What an earlier run left is deleted now, before anything is measured. ext4 skips
# inodes deleted in the last 30 s when it allocates new ones, and for 5 minutes more
# while their inode table block is dirty (fs/ext4/ialloc.c, recently_deleted), which
# writing the data sets and repositories makes it: every file a restore creates then
# costs a scan past thousands of such inodes, and restore figures measure the
# allocator and the order of the tools. So restores wait until RECENTLY_DELETED
# seconds after this deletion, and restored trees are kept until the end of the run.
CLEARED_AT=
for d in bin data repos restore home logs; do
	if [ -e "$WORK/$d" ]; then
		rm -rf "${WORK:?}/$d"
		CLEARED_AT=$(date +%s)
	fi
done
sync
RECENTLY_DELETED=${RECENTLY_DELETED:-335}
# Restores run in RESTORE_ROUNDS rounds (each tool once per round, in the same order)
# and the table reports each tool's fastest. The first command after the wait above
# runs on a machine that has been idle for minutes, and on the reference machine that
# first restore was up to a third slower than the same restore repeated; a second
# round gives every tool a run that follows another's.
RESTORE_ROUNDS=${RESTORE_ROUNDS:-2}
# First backups likewise run in FIRST_BACKUP_ROUNDS rounds: round 1 into the
# repository the later backups and restores use, every further round into a scratch
# repository of its own (removed at the end of the run, so that no deletion slows the
# restores); the table reports each tool's fastest round and lists them all. A single
# first backup on the reference machine varies by 5-10 % from run to run for every
# tool alike.
FIRST_BACKUP_ROUNDS=${FIRST_BACKUP_ROUNDS:-2}
mkdir -p "$WORK/bin" "$WORK/data" "$WORK/repos" "$WORK/restore" "$WORK/home" "$WORK/logs"
touch "$WORK/.cairn-bench"
# On ext4, mark the restore directory as a top of directory hierarchies for the Orlov
# allocator: restored trees then go to block groups with free space. Without it, on
# a file system whose nearby groups are full (the data sets and repositories were
# just written there), every file created costs 0.5-0.9 ms of kernel time scanning
# for a group, for every tool alike, and restore figures measure the allocator.
chattr +T "$WORK/restore" 2>/dev/null || true

# ---------------------------------------------------------------- tools
missing=()
command -v restic >/dev/null || missing+=(restic)
command -v borg >/dev/null || missing+=(borgbackup)
[ -x /usr/bin/time ] || missing+=(time)
if ((${#missing[@]})); then
	log "installing ${missing[*]} with apt-get"
	if [ ! -e /tmp/cairn-apt-updated ]; then
		apt-get update -qq >"$WORK/logs/apt.log" 2>&1 && touch /tmp/cairn-apt-updated
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$WORK/logs/apt.log" 2>&1 ||
		log "apt-get install failed (see $WORK/logs/apt.log)"
fi
[ -x /usr/bin/time ] || die "/usr/bin/time is required (apt-get install time)"

declare -A STATUS # tool -> "" (usable) or a reason
for t in $TOOLS; do STATUS[$t]=""; done
CAIRN=$WORK/bin/cairn
if [ -n "${STATUS[cairn]+x}" ] && [ -n "${CAIRN_BIN:-}" ]; then
	CAIRN=$(command -v "$CAIRN_BIN") || STATUS[cairn]="CAIRN_BIN $CAIRN_BIN not found"
	log "cairn: using $CAIRN_BIN"
elif [ -n "${STATUS[cairn]+x}" ]; then
	log "building cairn"
	if (cd "$ROOT" && go build -o "$CAIRN" ./cmd/cairn) >"$WORK/logs/cairn-build.log" 2>&1; then
		log "cairn: built"
	else
		STATUS[cairn]="build failed"
		log "cairn: build failed (see $WORK/logs/cairn-build.log); measuring the other tools"
	fi
fi
if [ -n "${STATUS[restic]+x}" ] && ! command -v restic >/dev/null; then STATUS[restic]="not installed"; fi
if [ -n "${STATUS[borg]+x}" ] && ! command -v borg >/dev/null; then STATUS[borg]="not installed"; fi

RESTIC_GLOBAL=()
RESTIC_INIT=()
RESTIC_VERSION=$(restic version 2>/dev/null | awk '{print $2}')
if [ -n "$RESTIC_VERSION" ]; then
	if printf '0.14.0\n%s\n' "$RESTIC_VERSION" | sort -V -C; then
		RESTIC_GLOBAL=(--compression auto)
		RESTIC_INIT=(--repository-version 2)
		RESTIC_NOTE="repository v2, --compression auto (zstd)"
	else
		RESTIC_NOTE="restic $RESTIC_VERSION predates compression (< 0.14): uncompressed"
	fi
fi

log "building the generator"
(cd "$ROOT" && go build -o "$WORK/bin/gen" ./bench/gen) >"$WORK/logs/gen-build.log" 2>&1 ||
	die "cannot build bench/gen: $(cat "$WORK/logs/gen-build.log")"
GEN=$WORK/bin/gen

# Isolated homes and caches, fresh every run; all repositories encrypted.
printf 'cairn-bench-password-%s\n' "$SEED" >"$WORK/home/password"
export HOME=$WORK/home
export XDG_CACHE_HOME=$WORK/home/cache XDG_CONFIG_HOME=$WORK/home/config
export CAIRN_PASSWORD_FILE=$WORK/home/password
export RESTIC_PASSWORD_FILE=$WORK/home/password
BORG_PASSPHRASE=$(cat "$WORK/home/password")
export BORG_PASSPHRASE BORG_BASE_DIR=$WORK/home/borg BORG_DISPLAY_PASSPHRASE=no
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
unset RESTIC_REPOSITORY BORG_REPO
# Run the tools from the work dir, so no config file in the caller's
# directory (e.g. a cairn.toml) influences them.
cd "$WORK" || die "cannot cd to $WORK"

# ---------------------------------------------------------------- helpers
declare -A V # "ds|tool|metric" -> raw value; "ds|metric" for data-set facts

tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}'; }
tree_files() { find "$1" -type f | wc -l; }

# measure KEY CMD... runs CMD under /usr/bin/time -v; sets SECS, RSS_KB, CPU_S, RC.
measure() {
	local key=$1
	shift
	local out=$WORK/logs/$key.log tv=$WORK/logs/$key.time t0 t1
	# Flush dirty pages (generated data, the previous tool's writes) so every
	# command starts from the same state; the page cache stays warm.
	sync
	t0=$(date +%s.%N)
	/usr/bin/time -v -o "$tv" "$@" >"$out" 2>&1 </dev/null
	RC=$?
	t1=$(date +%s.%N)
	SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
	RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")
	CPU_S=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$tv")
	if ((RC != 0)); then
		log "  $key failed (exit $RC), last lines of $out:"
		tail -n 5 "$out" | sed 's/^/    /' >&2
	fi
}

repo_of() { echo "$WORK/repos/$1-$2"; }

# warm DIR reads every file under DIR into the page cache. Before a backup, DIR is
# the data set: borg drops the pages of the files it has read (posix_fadvise
# DONTNEED), and the tool after it would otherwise read the data set from the disk
# (1.9 GB of "File system inputs" in /usr/bin/time's record). Before a restore, DIR
# is the tool's repository: what a tool's own backup left in the page cache differs
# (restic leaves its packs there, borg and cairn drop theirs), and without this
# restic restored from memory while cairn and borg read 1.8 GB from the disk.
warm() { find "$1" -type f -exec cat {} + >/dev/null; }

# add_round ds tool metric appends this command's time ($SECS) to the list
# "metric_rounds" and keeps the fastest in "metric_s"; it succeeds when this round
# is the fastest so far.
add_round() {
	local k="$1|$2|$3"
	V[${k}_rounds]+="${V[${k}_rounds]:+, }$SECS s"
	if [ -n "${V[${k}_s]:-}" ] && ! awk -v a="$SECS" -v b="${V[${k}_s]}" 'BEGIN {exit !(a < b)}'; then
		return 1
	fi
	V[${k}_s]=$SECS
}

tool_init() { # tool repo
	case $1 in
	cairn) "$CAIRN" init --repo "$2" ;;
	restic) restic -r "$2" init "${RESTIC_INIT[@]}" ;;
	borg) borg init -e repokey-blake2 "$2" ;;
	esac
}

backup() { # ds tool n [round]: round > 1 is a further first backup into a scratch repository
	local ds=$1 tool=$2 n=$3 round=${4:-1} repo data=$WORK/data/$1 key=$1-$2-backup$3
	repo=$(repo_of "$ds" "$tool")
	if ((round > 1)); then
		repo+=-round$round key+=-round$round
	fi
	warm "$data"
	case $tool in
	cairn) measure "$key" "$CAIRN" backup --repo "$repo" "$data" ;;
	restic) measure "$key" restic -r "$repo" "${RESTIC_GLOBAL[@]}" backup "$data" ;;
	borg) measure "$key" borg create --compression "$BORG_COMPRESSION" "$repo::day$n" "$data" ;;
	esac
	if ((RC != 0)); then
		V[$ds|$tool|fail]="backup $n failed${4:+ in round $round}"
		return 1
	fi
	if ((round > 1)); then
		if add_round "$ds" "$tool" b1; then V[$ds|$tool|b1_cpu]=$CPU_S; fi
		if ((RSS_KB > ${V[$ds|$tool|b1_rss]:-0})); then V[$ds|$tool|b1_rss]=$RSS_KB; fi
		log "  $tool backup 1 (round $round): ${SECS}s, peak RSS $(fmt_val kib "$RSS_KB") ($(rate "${V[$ds|bytes0]}" "$SECS") MB/s)"
		return 0
	fi
	if ((n == 1)); then add_round "$ds" "$tool" b1 || :; fi
	V[$ds|$tool|b${n}_s]=$SECS
	V[$ds|$tool|b${n}_cpu]=$CPU_S
	V[$ds|$tool|b${n}_rss]=$RSS_KB
	V[$ds|$tool|size$n]=$(du -sb "$repo" | cut -f1)
	local bytes=${V[$ds|bytes$([ "$n" = 3 ] && echo 1 || echo 0)]}
	log "  $tool backup $n: ${SECS}s, repo $(human "${V[$ds|$tool|size$n]}"), peak RSS $(fmt_val kib "$RSS_KB") ($(rate "$bytes" "$SECS") MB/s)"
}

# list_snapshots ds tool: untimed, for the logs.
list_snapshots() {
	local repo
	repo=$(repo_of "$1" "$2")
	case $2 in
	cairn) "$CAIRN" snapshots --repo "$repo" ;;
	restic) restic -r "$repo" snapshots ;;
	borg) borg list "$repo" ;;
	esac >"$WORK/logs/$1-$2-snapshots.log" 2>&1 </dev/null || log "  $2: listing snapshots failed (see $WORK/logs/$1-$2-snapshots.log)"
}

restore() { # ds tool round
	local ds=$1 tool=$2 round=$3 repo target=$WORK/restore/$1-$2-$3 data=$WORK/data/$1 key=$1-$2-restore$3 verdict
	repo=$(repo_of "$ds" "$tool")
	mkdir -p "$target"
	warm "$repo"
	case $tool in
	cairn) measure "$key" "$CAIRN" restore --repo "$repo" latest --target "$target" ;;
	restic) measure "$key" restic -r "$repo" restore latest --target "$target" ;;
	# borg stores paths without the leading "/" and extracts into the cwd.
	borg) measure "$key" env -C "$target" borg extract "$repo::day3" ;;
	esac
	if ((RC != 0)); then
		V[$ds|$tool|verify]="FAIL (restore exit $RC in round $round)"
		V[$ds|$tool|fail]="restore failed"
		return 1
	fi
	add_round "$ds" "$tool" restore || :
	if ((RSS_KB > ${V[$ds|$tool|restore_rss]:-0})); then V[$ds|$tool|restore_rss]=$RSS_KB; fi
	# Every tool restores the absolute path under the target: TARGET/<abs path>.
	if [ ! -d "$target$data" ]; then
		verdict="FAIL (no $data under target in round $round)"
	elif diff -r --no-dereference -q "$data" "$target$data" >"$WORK/logs/$key-verify.log" 2>&1; then
		verdict="ok"
	else
		verdict="FAIL ($(wc -l <"$WORK/logs/$key-verify.log") differences in round $round)"
	fi
	# One failed round fails the tool's verification.
	if [ "${V[$ds|$tool|verify]:-ok}" = ok ]; then V[$ds|$tool|verify]=$verdict; fi
	log "  $tool restore (round $round): ${SECS}s ($(rate "${V[$ds|bytes1]}" "$SECS") MB/s), verify $verdict"
}

# settle_deletions waits until the earlier run's files were deleted RECENTLY_DELETED
# seconds ago (see the work dir setup).
settle_deletions() {
	[ -n "$CLEARED_AT" ] || return 0
	local left=$((CLEARED_AT + RECENTLY_DELETED - $(date +%s)))
	if ((left > 0)); then
		log "  waiting ${left}s for the earlier run's deleted inodes to age (ext4 recently_deleted)"
		sleep "$left"
	fi
	CLEARED_AT=
}

human() { # bytes -> decimal units
	awk -v b="$1" 'BEGIN {
		if (b == "") { print "–"; exit }
		split("B kB MB GB TB", u, " "); i = 1; v = b + 0; neg = v < 0; if (neg) v = -v
		while (v >= 1000 && i < 5) { v /= 1000; i++ }
		fmt = (i == 1) ? "%s%.0f %s\n" : (v < 10 ? "%s%.2f %s\n" : "%s%.1f %s\n")
		printf fmt, neg ? "-" : "", v, u[i] }'
}
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0 && b != "") printf "%.1f", b / 1e6 / s; else printf "–" }'; }

fmt_val() { # kind raw
	local kind=$1 raw=$2
	[ -z "$raw" ] && {
		echo "–"
		return
	}
	case $kind in
	s | cpu) awk -v v="$raw" 'BEGIN {printf "%.2f s", v}' ;;
	mbs) awk -v v="$raw" 'BEGIN {printf "%.1f MB/s", v}' ;;
	bytes) human "$raw" ;;
	kib) awk -v v="$raw" 'BEGIN {printf "%.0f MiB", v / 1024}' ;;
	*) echo "$raw" ;;
	esac
}
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.2f×", a / b; else printf "–" }'
}

usable() { [ -z "${STATUS[$1]}" ] && [ -z "${V[$2|$1|fail]:-}" ]; }

# ---------------------------------------------------------------- run
avail=$(df -B1 --output=avail "$WORK" | tail -1)
need=$(awk -v s="$SCALE" -v r="$RESTORE_ROUNDS" -v f="$FIRST_BACKUP_ROUNDS" 'BEGIN {printf "%d", s * 2.2e9 * (4 + 3 * (r + f - 1))}')
((avail > need)) || log "warning: $(human "$avail") free under $WORK, about $(human "$need") recommended"

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN {exit !(l > 0.5 * n)}'; then
	log "warning: load average is $LOAD_START on $(nproc) cores; other work on this machine will skew the timings"
fi
for ds in $DATASETS; do
	data=$WORK/data/$ds
	log "== data set $ds (scale $SCALE, seed $SEED)"
	"$GEN" -out "$data" -kind "$ds" -seed "$SEED" -scale "$SCALE" >"$WORK/logs/$ds-gen.log" 2>&1 ||
		die "generating $ds failed: $(cat "$WORK/logs/$ds-gen.log")"
	log "  $(cat "$WORK/logs/$ds-gen.log")"
	V[$ds|bytes0]=$(tree_bytes "$data")
	V[$ds|files0]=$(tree_files "$data")

	for tool in $TOOLS; do
		usable "$tool" "$ds" || continue
		repo=$(repo_of "$ds" "$tool")
		if ! tool_init "$tool" "$repo" >"$WORK/logs/$ds-$tool-init.log" 2>&1 </dev/null; then
			V[$ds|$tool|fail]="init failed"
			log "  $tool init failed: $(tail -n 3 "$WORK/logs/$ds-$tool-init.log")"
			continue
		fi
		backup "$ds" "$tool" 1 && backup "$ds" "$tool" 2
	done
	for ((round = 2; round <= FIRST_BACKUP_ROUNDS; round++)); do
		for tool in $TOOLS; do
			usable "$tool" "$ds" || continue
			scratch=$(repo_of "$ds" "$tool")-round$round
			if ! tool_init "$tool" "$scratch" >"$WORK/logs/$ds-$tool-init-round$round.log" 2>&1 </dev/null; then
				V[$ds|$tool|fail]="init failed in round $round"
				continue
			fi
			backup "$ds" "$tool" 1 "$round"
		done
	done

	"$GEN" -mutate "$data" -seed "$MUTATE_SEED" >"$WORK/logs/$ds-mutate.log" 2>&1 ||
		die "mutating $ds failed: $(cat "$WORK/logs/$ds-mutate.log")"
	log "  $(cat "$WORK/logs/$ds-mutate.log")"
	V[$ds|bytes1]=$(tree_bytes "$data")
	V[$ds|files1]=$(tree_files "$data")
	V[$ds|mutation]=$(sed 's/^[^:]*: //' "$WORK/logs/$ds-mutate.log")

	for tool in $TOOLS; do
		usable "$tool" "$ds" && backup "$ds" "$tool" 3 && list_snapshots "$ds" "$tool"
	done
	settle_deletions
	for ((round = 1; round <= RESTORE_ROUNDS; round++)); do
		for tool in $TOOLS; do
			usable "$tool" "$ds" && restore "$ds" "$tool" "$round"
		done
	done
done
# The scratch repositories of further first-backup rounds go last: deleting them
# earlier would slow the restores (see settle_deletions).
rm -rf "$WORK"/repos/*-round*
ELAPSED=$(($(date +%s) - START))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
# metric_raw ds tool metric -> raw number (derived metrics computed here)
metric_raw() {
	local ds=$1 tool=$2 m=$3
	case $m in
	b1_mbs) [ -n "${V[$ds|$tool|b1_s]:-}" ] && rate "${V[$ds|bytes0]}" "${V[$ds|$tool|b1_s]}" ;;
	restore_mbs) [ -n "${V[$ds|$tool|restore_s]:-}" ] && rate "${V[$ds|bytes1]}" "${V[$ds|$tool|restore_s]}" ;;
	growth) [ -n "${V[$ds|$tool|size3]:-}" ] && echo $((V[$ds|$tool|size3] - V[$ds|$tool|size2])) ;;
	rss_backup)
		local m1=${V[$ds|$tool|b1_rss]:-} m2=${V[$ds|$tool|b2_rss]:-0} m3=${V[$ds|$tool|b3_rss]:-0}
		[ -n "$m1" ] && printf '%s\n' "$m1" "$m2" "$m3" | sort -n | tail -1
		;;
	*) echo "${V[$ds|$tool|$m]:-}" ;;
	esac
}

ROWS=(
	"first backup (fastest round)|b1_s|s"
	"first backup throughput|b1_mbs|mbs"
	"first backup CPU (user+sys)|b1_cpu|cpu"
	"first backup rounds|b1_rounds|text"
	"unchanged re-backup|b2_s|s"
	"day-2 backup (after mutation)|b3_s|s"
	"repo growth after day 2|growth|bytes"
	"restore latest (fastest round)|restore_s|s"
	"restore throughput|restore_mbs|mbs"
	"restore rounds|restore_rounds|text"
	"restore verified (diff -r, every round)|verify|text"
	"repo size after first backup|size1|bytes"
	"repo size after day 2|size3|bytes"
	"peak RSS backup (max of all)|rss_backup|kib"
	"peak RSS restore (max of rounds)|restore_rss|kib"
)

version_of() {
	case $1 in
	cairn)
		if [ -n "${STATUS[cairn]}" ]; then echo "cairn: ${STATUS[cairn]}"; else
			local v
			v=$("$CAIRN" version 2>/dev/null | head -1) || v=""
			[ -n "$v" ] || v="cairn (built from working tree)"
			echo "$v"
		fi
		;;
	restic) restic version 2>/dev/null | head -1 || echo "restic: ${STATUS[restic]}" ;;
	borg) borg --version 2>/dev/null || echo "borg: ${STATUS[borg]}" ;;
	esac
}

report() {
	local cols=() t
	for t in cairn restic borg; do [ -n "${STATUS[$t]+x}" ] && cols+=("$t"); done
	local ratios=()
	if [ -n "${STATUS[cairn]+x}" ]; then
		for t in restic borg; do [ -n "${STATUS[$t]+x}" ] && ratios+=("$t"); done
	fi
	local mem
	mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
	echo "# cairn benchmark results"
	echo
	echo "Generated by \`bench/run.sh$( ((QUICK)) && echo " --quick")\` on $(date -u '+%Y-%m-%d %H:%M UTC'); scale $SCALE, seed $SEED, mutation seed $MUTATE_SEED; total run time ${ELAPSED}s."
	echo "Warm page cache (the data set read before every backup, the tool's repository before every restore, \`sync\` before each timed command), tools run one after another; all repositories encrypted. First backups: $FIRST_BACKUP_ROUNDS rounds, restores: $RESTORE_ROUNDS rounds, of every tool in turn, the fastest reported."
	echo
	echo "## Machine"
	echo
	echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
	echo "- Memory: $mem; kernel $(uname -r); $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
	echo "- Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END (other processes on the machine skew timings)"
	echo "- Disk under work dir: $(df -h --output=source,fstype "$WORK" | tail -1 | awk '{print $1 " (" $2 ")"}')"
	for t in "${cols[@]}"; do echo "- $(version_of "$t")"; done
	echo "- $(go version 2>/dev/null)"
	echo "- Settings: cairn defaults (\`cairn init\` / \`cairn backup\`); restic ${RESTIC_NOTE:-}; borg \`init -e repokey-blake2\`, \`create --compression $BORG_COMPRESSION\`"
	local ds
	for ds in $DATASETS; do
		echo
		echo "## Data set \`$ds\`"
		echo
		echo "${V[$ds|files0]} files, $(human "${V[$ds|bytes0]}") ($(printf "%'d" "${V[$ds|bytes0]}") bytes) initially; after the simulated day ${V[$ds|files1]} files, $(human "${V[$ds|bytes1]}"). Day-2 changes: ${V[$ds|mutation]}"
		echo
		local hdr="| metric |" sep="|---|" c
		for c in "${cols[@]}"; do
			hdr+=" $c |"
			sep+="---:|"
		done
		for c in "${ratios[@]}"; do
			hdr+=" cairn/$c |"
			sep+="---:|"
		done
		echo "$hdr"
		echo "$sep"
		local row label m kind line raw
		for row in "${ROWS[@]}"; do
			IFS='|' read -r label m kind <<<"$row"
			line="| $label |"
			for c in "${cols[@]}"; do
				if [ -n "${STATUS[$c]}" ]; then
					line+=" ${STATUS[$c]} |"
				elif [ -n "${V[$ds|$c|fail]:-}" ] && [ -z "$(metric_raw "$ds" "$c" "$m")" ]; then
					line+=" ${V[$ds|$c|fail]} |"
				else
					raw=$(metric_raw "$ds" "$c" "$m")
					line+=" $(fmt_val "$kind" "$raw") |"
				fi
			done
			for c in "${ratios[@]}"; do
				if [ "$kind" = text ] || [ -n "${STATUS[cairn]}" ] || [ -n "${STATUS[$c]}" ]; then
					line+=" – |"
				else
					line+=" $(ratio "$(metric_raw "$ds" cairn "$m")" "$(metric_raw "$ds" "$c" "$m")") |"
				fi
			done
			echo "$line"
		done
	done
	echo
	echo "Throughput = data-set bytes / wall-clock seconds (first backup: initial data set; restore: data set after day 2). Ratios are cairn ÷ other (below 1 is better for time, size and memory; above 1 is better for throughput)."
	echo "Logs of every command: \`$WORK/logs/\`."
}

report | tee "$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
log "results written to $RESULTS"
# The restored trees were kept so that no deletion happened while restores ran.
rm -rf "${WORK:?}/restore"
