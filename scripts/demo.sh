#!/usr/bin/env bash
# The main job (`make demo`): build a small hello enclave from a container
# image made by the project itself, boot it (natively on KVM, nested where
# the host's KVM cannot boot Linux), and show the boot time to the heartbeat,
# the measurements, a signed attestation document verified against the local
# root, an echo over vsock, and a secret the enclave gets from the local KMS
# (Decrypt with Recipient, key policy on PCR0) while a debug-mode document is
# denied. Finishes by itself; exits non-zero if a step fails.
#
# Environment:
#   NITROVM_DEMO_MODE=auto|native|nested  where the enclave runs (default auto:
#       native when /dev/kvm is usable and not PVM-backed, else nested);
#       NITROVM_DEMO_NATIVE=1 is the same as native
#   NITROVM_DEMO_DEBUG=1   run the enclave with --debug-mode (PCRs in the
#       document are then zeros, as on Nitro; the console is shown)
#   NITROVM_DEMO_CPUS, NITROVM_DEMO_MEMORY  the enclave's vCPUs (default 2)
#       and memory in MiB (default 256)
#   NITROVM_CACHE          cache of kernels and pulled images (default ~/.cache/nitrovm)
#   NITROVM_DEMO_IMAGE=localhost:PORT/REPO:TAG  take the image from that
#       loopback registry (build-enclave --docker-uri pulls it): the demo
#       starts one there (test/registry) and pushes its image into it, or,
#       when something already listens on PORT, pulls REPO:TAG from it
# Outputs (demo.eif, image tar, attestation document, logs) go to bin/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export CGO_ENABLED=0
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

T0=$(date +%s)
step() { echo "==> [$(($(date +%s) - T0))s] $*"; }
die() {
	echo "==> demo FAILED: $*" >&2
	exit 1
}
indent() { sed 's/^/    /'; }

out=bin/demo
# A fresh start, except for the demo CA (bin/demo/state/ca): its root is in
# the image's CA bundle (--trust-local-ca below), so keeping it keeps PCR0
# and PCR2 the same from run to run; rm -rf bin/demo makes a new CA.
if [ -d "$out" ]; then
	find "$out" -mindepth 1 -maxdepth 1 ! -name state -exec rm -rf {} +
	[ ! -d "$out/state" ] || find "$out/state" -mindepth 1 -maxdepth 1 ! -name ca -exec rm -rf {} +
fi
mkdir -p "$out"
NONCE=nitrovm-demo-nonce # demo/hello's default NONCE
TAG=nitrovm-demo/hello:latest
NONCE_HEX=$(printf %s "$NONCE" | od -An -tx1 | tr -d ' \n')
# The demo's own CA (and, natively, its KMS key store and enclave state):
# build-enclave --trust-local-ca puts its root in the image, the enclave's
# NSM and KMS use the same CA.
STATE="$PWD/$out/state"

# Where to boot: nitrovm's VMM needs a /dev/kvm that runs unmodified Linux
# guests (as internal/vmm.CheckHost decides). PVM-backed KVM (kvm_pvm) and a
# missing or inaccessible /dev/kvm mean nested mode.
mode=${NITROVM_DEMO_MODE:-auto}
[ "${NITROVM_DEMO_NATIVE:-0}" = 1 ] && mode=native
why=""
case "$mode" in
auto)
	if [ -e /sys/module/kvm_pvm ]; then
		mode=nested why="/dev/kvm is PVM-backed (kvm_pvm), it cannot boot an unmodified Linux guest"
	elif [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		mode=nested why="no usable /dev/kvm"
	else
		mode=native why="/dev/kvm is usable"
	fi
	;;
native) why="NITROVM_DEMO_MODE=native" ;;
nested) why="NITROVM_DEMO_MODE=nested" ;;
*) die "NITROVM_DEMO_MODE=$mode: want auto, native or nested" ;;
esac

step "nitrovm demo: the enclave will run $mode ($why)"

step "dependencies (Debian packages) and kernels, cached in ${NITROVM_CACHE:-$HOME/.cache/nitrovm} (first run: 5-10 min to compile the enclave kernel)"
bash scripts/deps.sh || die "scripts/deps.sh"
kernel=$(bash scripts/kernel/build-guest.sh) || die "scripts/kernel/build-guest.sh"
echo "    guest kernel: $kernel"
if [ "$mode" = nested ]; then
	l1=$(bash scripts/kernel/l1-kernel.sh) || die "scripts/kernel/l1-kernel.sh"
	echo "    L1 kernel:    ${l1%%$'\n'*}"
fi

step "go build: nitrovm, the enclave init, demo/hello, demo/parent, demo/mkimage (static)"
[ -x bin/nitrovm ] || go build -trimpath -o bin/nitrovm ./cmd/nitrovm || die "go build nitrovm"
go build -trimpath -ldflags='-s -w' -o "$out/init" ./guest/init || die "go build guest/init"
go build -trimpath -ldflags='-s -w' -o "$out/hello" ./demo/hello || die "go build demo/hello"
go build -trimpath -o "$out/parent" ./demo/parent || die "go build demo/parent"
go build -trimpath -o "$out/mkimage" ./demo/mkimage || die "go build demo/mkimage"
ls -l bin/nitrovm "$out"/{init,hello,parent} | awk '{ printf "    %-22s %9d bytes\n", $9, $5 }'

step "container image $TAG: demo/mkimage -> $out/hello.tar (docker save format, no Docker needed)"
"$out/mkimage" -binary "$out/hello" -output "$out/hello.tar" -tag "$TAG" || die "demo/mkimage"
ls -l "$out/hello.tar" | awk '{ printf "    %s, %d bytes: /bin/hello, /etc/greeting, CMD [\"/bin/hello\"]\n", $9, $5 }'

if [ -n "${NITROVM_DEMO_IMAGE:-}" ]; then
	case "$NITROVM_DEMO_IMAGE" in
	localhost:[0-9]*/* | 127.0.0.1:[0-9]*/*) ;;
	*) die "NITROVM_DEMO_IMAGE=$NITROVM_DEMO_IMAGE: want localhost:PORT/REPO:TAG (a loopback registry)" ;;
	esac
	hostport=${NITROVM_DEMO_IMAGE%%/*} repo=${NITROVM_DEMO_IMAGE#*/}
	port=${hostport#*:}
	go build -trimpath -o "$out/registry" ./test/registry || die "go build test/registry"
	step "loopback registry on 127.0.0.1:$port (test/registry), pushing $out/hello.tar as $repo"
	"$out/registry" -addr "127.0.0.1:$port" -push "$out/hello.tar=$repo" -ready "$out/registry.ready" >"$out/registry.log" 2>&1 &
	regpid=$!
	trap 'kill "$regpid" 2>/dev/null || true' EXIT
	for _ in $(seq 50); do
		[ -s "$out/registry.ready" ] && break
		kill -0 "$regpid" 2>/dev/null || break
		sleep 0.2
	done
	if [ -s "$out/registry.ready" ]; then
		indent <"$out/registry.log"
	else
		indent <"$out/registry.log"
		echo "    port $port is taken: pulling $repo from the registry already listening there"
	fi
	step "nitrovm build-enclave --docker-uri $NITROVM_DEMO_IMAGE --output-file $out/demo.eif --kernel $kernel --init $out/init --trust-local-ca (the demo CA's root joins the image's CA bundle: TLS to the local KMS)"
	NITROVM_STATE_DIR="$STATE" NITROVM_CACHE="$PWD/$out/cache" bin/nitrovm build-enclave --docker-uri "$NITROVM_DEMO_IMAGE" --pull always --trust-local-ca \
		--output-file "$out/demo.eif" --kernel "$kernel" --init "$out/init" >"$out/build.json" 2>"$out/build.err" ||
		{ indent <"$out/build.err"; die "build-enclave"; }
	kill "$regpid" 2>/dev/null || true
else
	step "nitrovm build-enclave --docker-uri $TAG --image-tar $out/hello.tar --output-file $out/demo.eif --kernel $kernel --init $out/init --trust-local-ca (the demo CA's root joins the image's CA bundle: TLS to the local KMS)"
	NITROVM_STATE_DIR="$STATE" bin/nitrovm build-enclave --docker-uri "$TAG" --image-tar "$out/hello.tar" --output-file "$out/demo.eif" \
		--kernel "$kernel" --init "$out/init" --trust-local-ca >"$out/build.json" 2>"$out/build.err" ||
		{ indent <"$out/build.err"; die "build-enclave"; }
fi
indent <"$out/build.err"
indent <"$out/build.json"
PCR0=$(sed -n 's/.*"PCR0": *"\([0-9a-f]*\)".*/\1/p' "$out/build.json" | head -n 1)
[ ${#PCR0} = 96 ] || die "no PCR0 in the build-enclave output"

step "nitrovm describe-eif --eif-path $out/demo.eif"
bin/nitrovm describe-eif --eif-path "$out/demo.eif" >"$out/describe-eif.json" || die "describe-eif"
grep -v '"\(Id\|Created\|Architecture\|Os\|HashAlgorithm\)"' "$out/describe-eif.json" | sed -n '1,40p' | indent
grep -q "\"PCR0\": \"$PCR0\"" "$out/describe-eif.json" || die "describe-eif PCR0 differs from build-enclave's"

log="$out/enclave.log"
debug=${NITROVM_DEMO_DEBUG:-0} cpus=${NITROVM_DEMO_CPUS:-2} memory=${NITROVM_DEMO_MEMORY:-256}
case "$debug$cpus$memory" in *[!0-9]*) die "NITROVM_DEMO_DEBUG, _CPUS and _MEMORY take numbers" ;; esac
# Show the script's own lines; keep everything (L1 console too) in the log.
show() {
	sed -u -n -e '/^\(==> \|    \|demo-enclave:\)/{p;d;}' \
		-e 's/^\(nested: L1 ready (uptime [0-9.]* s)\).*/==> \1, running demo-enclave.sh in it/p' \
		-e 's/^\(nested: L1 command finished in .*\)/==> \1/p'
}
set +e
if [ "$mode" = native ]; then
	step "booting the enclave natively on /dev/kvm (scripts/demo-enclave.sh)"
	NITROVM="$PWD/bin/nitrovm" PARENT="$PWD/$out/parent" DEMO_WORK="$PWD/$out/run" NITROVM_STATE_DIR="$STATE" \
		DEMO_DEBUG="$debug" DEMO_CPUS="$cpus" DEMO_MEMORY="$memory" \
		timeout 600 sh scripts/demo-enclave.sh "$PWD/$out/demo.eif" "$PCR0" "$NONCE_HEX" 2>&1 |
		tee "$log" | show
	rc=${PIPESTATUS[0]}
else
	step "booting an L1 Linux with working KVM under QEMU TCG (nitrovm nested), the enclave inside it (slow: emulated, ~30-60 s)"
	# The nested harness passes no environment: DEMO_DEBUG goes in the command.
	timeout 1200 bin/nitrovm nested --timeout 18m \
		--file /demo/demo-enclave.sh=scripts/demo-enclave.sh \
		--file /demo/demo.eif="$out/demo.eif" \
		--file /demo/parent="$out/parent" \
		--file /demo/state/ca/ca.pem="$STATE/ca/ca.pem" \
		-- sh -c "DEMO_DEBUG=$debug DEMO_CPUS=$cpus DEMO_MEMORY=$memory DEMO_WORK=/demo/run PARENT=/demo/parent NITROVM_STATE_DIR=/demo/state \
		exec sh /demo/demo-enclave.sh /demo/demo.eif $PCR0 $NONCE_HEX" 2>&1 |
		tee "$log" | show
	rc=${PIPESTATUS[0]}
fi
set -e
if [ "$rc" != 0 ] || ! grep -q '^DEMO-RESULT ok' "$log"; then
	if [ "$mode" = nested ]; then # the L1 console was not shown
		echo "    --- last lines of $log:"
		tail -n 40 "$log" | indent
	fi
	die "the enclave part failed (status $rc); full log: $log"
fi

result() { sed -n "s/^DEMO-RESULT $1//p" "$log" | tr -d '\r' | head -n "${2:-1}"; }
boot_ms=$(result boot_ms=)
echo_line=$(result 'echo=ok ')
step "summary ($mode, total $(($(date +%s) - T0)) s)"
echo "    enclave EIF:         $out/demo.eif (from container image ${NITROVM_DEMO_IMAGE:-$out/hello.tar})"
echo "    boot to heartbeat:   $boot_ms ms$([ "$mode" = nested ] && echo ' (nested: L2 KVM guest inside a QEMU TCG L1)')"
echo "    PCR0:                $PCR0"
echo "    PCR1:                $(sed -n 's/.*"PCR1": *"\([0-9a-f]*\)".*/\1/p' "$out/build.json" | head -n 1)"
echo "    PCR2:                $(sed -n 's/.*"PCR2": *"\([0-9a-f]*\)".*/\1/p' "$out/build.json" | head -n 1)"
if [ "${NITROVM_DEMO_DEBUG:-0}" = 1 ]; then
	echo "    attestation:         verified: yes (debug mode: PCRs all zero, nonce $NONCE)"
else
	echo "    attestation:         verified: yes (PCR0 = the EIF's, nonce \"$NONCE\", signed ES384)"
fi
echo "    certificate chain:"
result chain= 8 | sed 's/^/      /'
echo "    echo over vsock:     ok ($echo_line)"
echo "    KMS with Recipient:  the enclave decrypted the secret, sha256 $(result 'kms=ok sha256=') (policy: ImageSha384 = PCR0)"
echo "    KMS, other document: the same Decrypt with a $(result kms_denied=) document: AccessDeniedException"
echo "    enclave terminated:  $(result terminated=)"
