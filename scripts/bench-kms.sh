#!/usr/bin/env bash
# bench-kms.sh: KMS Decrypt requests/s on one core. Servers, one at a time,
# pinned to one CPU with GOMAXPROCS=1 (taskset -c 1): nsmithuk/local-kms
# doing plain Decrypt (the reference), `nitrovm kms serve` doing plain
# Decrypt, and `nitrovm kms serve` doing Decrypt with a Recipient (a
# different attestation document per request, verified against the local
# CA, a key policy on PCR0, the answer sealed to the document's RSA key as
# CMS). The load is test/bench/kmsload on the other CPU (fixed request
# bodies over HTTP keep-alive). Rounds alternate the three; the best round of
# each counts. Prints the rates and the ratios nitrovm / local-kms (goal
# >= 1.0x for both).
#
# local-kms is installed with `go install` from the Go module proxy into
# ${NITROVM_CACHE:-~/.cache/nitrovm}/local-kms (its own GOPATH and GOBIN,
# outside the repository; never vendored or committed).
# Usage: scripts/bench-kms.sh [--duration 5s] [--rounds 3] [--conns 4]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0

# The version go-partial.tsv lists; change both together.
LOCALKMS=github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6
duration=5s rounds=3 conns=4
while [[ $# -gt 0 ]]; do
	case $1 in
	--duration) duration=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--conns) conns=$2; shift 2 ;;
	*) echo "usage: $0 [--duration D] [--rounds N] [--conns N]" >&2; exit 2 ;;
	esac
done
[[ $(nproc) -ge 2 ]] || { echo "bench-kms: needs 2 CPUs (server on one, load on the other)" >&2; exit 1; }

cache=${NITROVM_CACHE:-$HOME/.cache/nitrovm}/local-kms
if [[ ! -x $cache/bin/local-kms || ! -f $cache/bin/version || $(cat "$cache/bin/version") != "$LOCALKMS" ]]; then
	echo "bench-kms: go install $LOCALKMS (GOPATH=$cache/gopath, GOBIN=$cache/bin)" >&2
	mkdir -p "$cache"
	(cd "$cache" && GOPATH="$cache/gopath" GOBIN="$cache/bin" GOFLAGS=-modcacherw go install "$LOCALKMS")
	echo "$LOCALKMS" >"$cache/bin/version"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/nitrovm-bench-kms.XXXXXX")
server=
cleanup() {
	[[ -z $server ]] || kill "$server" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -trimpath -o "$work/nitrovm" ./cmd/nitrovm
go build -trimpath -o "$work/kmsload" ./test/bench/kmsload
port=$((20000 + RANDOM % 20000))

# start NAME CMD...: runs CMD on CPU 1 with GOMAXPROCS=1 and waits for the port.
start() {
	local name=$1
	shift
	GOMAXPROCS=1 taskset -c 1 "$@" >"$work/$name.out" 2>"$work/$name.log" &
	server=$!
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-kms: $name did not listen on $port" >&2
	tail -n 20 "$work/$name.log" >&2
	return 1
}
stop() {
	kill "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	server=
}
# measure NAME [kmsload flags]: one round against the running server.
measure() {
	local name=$1
	shift
	GOMAXPROCS=1 taskset -c 0 "$work/kmsload" -endpoint "http://127.0.0.1:$port" -conns "$conns" -duration "$duration" \
		-label "$name" "$@" | tee -a "$work/results"
}

for ((r = 1; r <= rounds; r++)); do
	echo "--- round $r of $rounds"
	rm -rf "$work/localkms"
	mkdir -p "$work/localkms"
	start local-kms env PORT=$port KMS_DATA_PATH="$work/localkms/data" KMS_SEED_PATH="$work/localkms/none.yaml" "$cache/bin/local-kms"
	measure local-kms
	stop
	rm -rf "$work/nv"
	start nitrovm env NITROVM_STATE_DIR="$work/nv" "$work/nitrovm" kms serve --listen "127.0.0.1:$port"
	measure nitrovm
	measure nitrovm-recipient -recipient -ca-dir "$work/nv/ca"
	stop
done

awk -v cpus="$(nproc)" -v load="$(cut -d' ' -f1 /proc/loadavg)" -v d="$duration" -v n="$rounds" -v c="$conns" '
/^BENCH / { name = substr($2, 5); for (i = 3; i <= NF; i++) if ($i ~ /^rps=/) { v = substr($i, 5) + 0; if (v > best[name]) best[name] = v } }
END {
	printf "kms Decrypt, server on 1 CPU (GOMAXPROCS=1): local-kms plain %.0f/s, nitrovm plain %.0f/s, nitrovm with Recipient %.0f/s (best of %d x %s, %d connections; %d CPUs, load %s)\n", best["local-kms"], best["nitrovm"], best["nitrovm-recipient"], n, d, c, cpus, load
	if (best["local-kms"] > 0) printf "kms ratio nitrovm-plain/local-kms %.2fx, ratio nitrovm-recipient/local-kms %.2fx (goal >= 1.0x)\n", best["nitrovm"] / best["local-kms"], best["nitrovm-recipient"] / best["local-kms"]
}' "$work/results"
