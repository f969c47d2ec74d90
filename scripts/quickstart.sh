#!/usr/bin/env bash
# The quick start: builds cairn, creates a local repository (./.sample-repo) if there is
# none, backs up the sample app in testdata/sample-app (media files, its SQLite database
# with Django migrations, its version), and prints the snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/cairn ./cmd/cairn
cfg=testdata/sample-app/cairn.toml
repo=${CAIRN_QUICKSTART_REPO:-$PWD/.sample-repo}
if [ ! -e "$repo/config" ]; then
	./bin/cairn --config "$cfg" --repo "$repo" init
fi
./bin/cairn --config "$cfg" --repo "$repo" backup
./bin/cairn --config "$cfg" --repo "$repo" snapshots
./bin/cairn --config "$cfg" --repo "$repo" show latest
