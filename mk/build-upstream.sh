#!/usr/bin/env bash
# build-upstream.sh DIR: build yggdrasil 0.1.5 (yggd and its Go echo worker)
# into DIR, for "yggsim bench-matrix --upstream DIR" (see BENCHMARKS.md,
# "Side by side with 0.1.5"). Not part of make test.
#
#   mk/build-upstream.sh /tmp/ygg015
#
# The source is the public tag, cloned from GitHub:
#
#   git clone https://github.com/RedHatInsights/yggdrasil && git -C yggdrasil checkout 0.1.5
#
# UPSTREAM_GIT names another place to take it from: a local git directory
# (bare or not; read with git archive, nothing is cloned) or a URL.
# UPSTREAM_REF is the tag (default 0.1.5). Its Go modules come from the Go
# module proxy.
#
# Two edits are made to the source, with sed, and checked:
#
#  1. The deadlock fix. In dispatcher.go, HandleDataProcessSignal opens a
#     go-memdb write transaction to delete the message it has just handed
#     to the worker, and returns on a failed Delete without aborting it.
#     The Delete fails whenever the worker's answer was consumed first (the
#     answer path deletes the original message too, and 0.1.5's echo worker
#     answers from a goroutine before its Send returns); go-memdb then
#     keeps its writer lock forever, and every later write transaction
#     blocks: after a few dozen messages at 64 in flight, yggd answers
#     nothing more. The fix is one line: tx.Abort() before that return.
#  2. For the benchmark only: the canonical facts read the host's consumer
#     certificate from the fixed path /etc/pki/consumer/cert.pem, and
#     without it 0.1.5 publishes no connection status at all. The path is
#     changed to DIR/run/consumer/cert.pem, which the matrix writes for
#     each run, so nothing is written under /etc.
#
# 0.1.5's directories are set at link time, as its Makefile does
# (-X ...LibexecDir, LocalstateDir, SysconfDir): all point under DIR/run, which
# belongs to the matrix. It empties DIR/run before each run (0.1.5 kills
# every pid named in DIR/run/var/run/yggdrasil/workers at start) and puts
# the case's workers in DIR/run/libexec/yggdrasil, 0.1.5's worker directory.
#
# Built with the toolchain on PATH and, like make bench-build, without cgo
# (CGO_ENABLED=1 in the environment overrides it), so that the two are
# compared as implementations, not as builds.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
src_git=${UPSTREAM_GIT:-https://github.com/RedHatInsights/yggdrasil}
ref=${UPSTREAM_REF:-0.1.5}

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
if [ -d "$src_git" ]; then
	git -C "$src_git" archive "$ref" | tar -x -C "$src"
else
	git clone --quiet --depth 1 --branch "$ref" "$src_git" "$src"
fi

# 1. The deadlock fix: abort the write transaction when its Delete fails.
# UPSTREAM_NOFIX=1 leaves it out, to see the wedge.
delete='if err := tx.Delete(tableNameData, dataMessage); err != nil {'
if [ "$(grep -cF "$delete" "$src/dispatcher.go")" != 1 ]; then
	echo "build-upstream: $ref: dispatcher.go does not have the expected Delete once" >&2
	exit 1
fi
fix="with the deadlock fix (dispatcher.go, HandleDataProcessSignal: tx.Abort() when Delete fails)"
if [ "${UPSTREAM_NOFIX:-}" = 1 ]; then
	fix="WITHOUT the deadlock fix (UPSTREAM_NOFIX=1)"
else
	sed -i "/$delete/a\\
\t\t\t\ttx.Abort() // build-upstream.sh: the deadlock fix" "$src/dispatcher.go"
	grep -A2 -F "$delete" "$src/dispatcher.go" | grep -q 'tx.Abort() // build-upstream.sh' || {
		echo "build-upstream: the deadlock fix did not apply" >&2
		exit 1
	}
fi

# 2. The consumer certificate of the canonical facts, under DIR/run.
cert=/etc/pki/consumer/cert.pem
if [ "$(grep -cF "\"$cert\"" "$src/canonical_facts.go")" != 1 ]; then
	echo "build-upstream: $ref: canonical_facts.go does not read $cert once" >&2
	exit 1
fi
sed -i "s|\"$cert\"|\"$dir/run/consumer/cert.pem\"|" "$src/canonical_facts.go"

pkg=github.com/redhatinsights/yggdrasil
ldflags="-X '$pkg.Version=$ref' -X '$pkg.LibexecDir=$dir/run/libexec' -X '$pkg.LocalstateDir=$dir/run/var' -X '$pkg.SysconfDir=$dir/run/etc'"
export CGO_ENABLED=${CGO_ENABLED:-0}
(cd "$src" && go build -ldflags "$ldflags" -o "$dir/yggd" ./cmd/yggd &&
	go build -ldflags "$ldflags" -o "$dir/echo-worker" ./worker/echo)
printf '%s\n' "yggdrasil $ref from $src_git, $fix;" \
	"worker directory $dir/run/libexec/yggdrasil; CGO_ENABLED=$CGO_ENABLED; $(go version)" >"$dir/BUILD"
echo "build-upstream: $dir/yggd and $dir/echo-worker ($ref, $fix)"
