#!/bin/sh
# demo-enclave.sh is the part of `make demo` that runs where KVM works: on the
# host when its /dev/kvm can boot a Linux guest, else inside the nested L1
# (`nitrovm nested ... -- sh /demo/demo-enclave.sh ...`). POSIX sh, so that
# busybox sh runs it.
#
#   sh scripts/demo-enclave.sh EIF PCR0 NONCE_HEX
#
# Environment: NITROVM (nitrovm binary, default: nitrovm in PATH), PARENT
# (demo/parent binary, default /demo/parent), DEMO_WORK (work directory,
# default a new temporary one), DEMO_MEMORY (MiB, default 256), DEMO_CPUS
# (default 2), DEMO_DEBUG=1 (run in debug mode: the attestation document's
# PCRs are then zeros, as on Nitro, and the enclave console is shown).
#
# It starts the parent program (receives the attestation document on the
# hybrid vsock socket <uds>_5000, then echoes through CONNECT 5005), starts
# the enclave with run-enclave --kms and times it to the heartbeat, verifies the
# document against the local CA root with the expected PCR0 and nonce, shows
# describe-enclaves and terminates the enclave.
#
# KMS step: the parent creates a key whose policy allows Decrypt only to
# documents with the EIF's PCR0 (zeros in debug mode) and encrypts a secret
# under it (nitrovm kms call); the enclave gets the secret back with Decrypt
# and a Recipient through run-enclave --kms and reports its SHA-256; the
# same request with a document of the other mode (debug-mode, or not) for
# the same EIF and key is then denied. The EIF must trust the local CA
# (build-enclave --trust-local-ca with the same NITROVM_STATE_DIR). Lines starting with
# "DEMO-RESULT " are the results demo.sh summarises. Exits non-zero on any
# failure; every step has a time limit.
set -eu

EIF=$1
PCR0=$2
NONCE_HEX=$3
NITROVM=${NITROVM:-nitrovm}
PARENT=${PARENT:-/demo/parent}
MEM=${DEMO_MEMORY:-256}
CPUS=${DEMO_CPUS:-2}
W=${DEMO_WORK:-$(mktemp -d)}
mkdir -p "$W"
export NITROVM_STATE_DIR=${NITROVM_STATE_DIR:-$W/state}
UDS=$W/vsock.sock
# Unix socket paths are limited to 107 bytes (with the _5000 suffix).
[ ${#UDS} -le 90 ] || UDS=$(mktemp -d /tmp/nitrovm-demo.XXXXXX)/vsock.sock
ENCLAVE_ID=
PARENT_PID=

step() { echo "==> $*"; }
indent() { sed 's/^/    /' "$@"; }

# now_ms: milliseconds, from date +%s%N where it works, else /proc/uptime
# (busybox's date has no %N; uptime has 10 ms resolution).
now_ms() {
	t=$(date +%s%N 2>/dev/null || true)
	case "$t" in
	*N* | "") awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime ;;
	*) echo $((t / 1000000)) ;;
	esac
}

cleanup() {
	if [ -n "$PARENT_PID" ]; then kill "$PARENT_PID" 2>/dev/null || true; fi
	if [ -n "$ENCLAVE_ID" ]; then
		"$NITROVM" terminate-enclave --enclave-id "$ENCLAVE_ID" >/dev/null 2>&1 || true
	fi
}
fail() {
	echo "DEMO-RESULT failed: $*"
	echo "demo-enclave: FAILED: $*" >&2
	for f in "$NITROVM_STATE_DIR"/logs/*.log; do
		[ -f "$f" ] || continue
		echo "--- supervisor log $f (last 30 lines)"
		tail -n 30 "$f"
	done
	if [ -f "$NITROVM_STATE_DIR/events.log" ]; then
		echo "--- events.log"
		cat "$NITROVM_STATE_DIR/events.log"
	fi
	cleanup
	exit 1
}
trap cleanup EXIT
trap 'fail interrupted' INT TERM

# 0. The KMS key and the secret, encrypted by the parent.
zeros=000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
KMS_PCR0=$PCR0 DENY_MODE=--debug-mode
if [ "${DEMO_DEBUG:-0}" = 1 ]; then KMS_PCR0=$zeros DENY_MODE=; fi
SECRET="the demo secret, only for PCR0 ${KMS_PCR0%"${KMS_PCR0#????????????????}"}"
SECRET_SHA=$(printf %s "$SECRET" | sha256sum | cut -d' ' -f1)
step "kms: the parent creates a key whose policy allows kms:Decrypt only with kms:RecipientAttestation:ImageSha384 = ${KMS_PCR0%"${KMS_PCR0#????????????????}"}..., and encrypts a secret (sha256 $SECRET_SHA)"
policy='{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"parent\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"*\"},\"Action\":[\"kms:Encrypt\",\"kms:DescribeKey\",\"kms:GetKeyPolicy\",\"kms:PutKeyPolicy\"],\"Resource\":\"*\"},{\"Sid\":\"enclave\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"*\"},\"Action\":\"kms:Decrypt\",\"Resource\":\"*\",\"Condition\":{\"StringEqualsIgnoreCase\":{\"kms:RecipientAttestation:ImageSha384\":\"'$KMS_PCR0'\"}}}]}'
timeout 60 "$NITROVM" kms call CreateKey "{\"Description\":\"nitrovm demo\",\"Policy\":\"$policy\"}" >"$W/kms-key.json" 2>"$W/kms.err" ||
	{ indent "$W/kms.err"; fail "kms call CreateKey"; }
KEY_ARN=$(sed -n 's/.*"Arn": *"\([^"]*\)".*/\1/p' "$W/kms-key.json" | head -n 1)
[ -n "$KEY_ARN" ] || fail "no key ARN in the CreateKey output"
timeout 60 "$NITROVM" kms call Encrypt "{\"KeyId\":\"$KEY_ARN\",\"Plaintext\":\"$(printf %s "$SECRET" | base64 | tr -d '\n')\"}" >"$W/kms-encrypt.json" 2>"$W/kms.err" ||
	{ indent "$W/kms.err"; fail "kms call Encrypt"; }
sed -n 's/.*"CiphertextBlob": *"\([^"]*\)".*/\1/p' "$W/kms-encrypt.json" >"$W/secret.ct"
[ -s "$W/secret.ct" ] || fail "no CiphertextBlob in the Encrypt output"
echo "    key $KEY_ARN, ciphertext $(wc -c <"$W/secret.ct") base64 bytes"

# 1. The parent listens first: the enclave app sends its document as soon
# as it runs (it retries for a minute, but there is no need to race).
step "parent: listening for the attestation document on ${UDS}_5000"
"$PARENT" -uds "$UDS" -out "$W/attestation.cbor" -timeout 240s \
	-message "hello over vsock from the parent" -kms-ciphertext "$W/secret.ct" -kms-public-key "$W/recipient.der" \
	>"$W/parent.log" 2>&1 &
PARENT_PID=$!

# 2. Start the enclave; run-enclave returns once init's heartbeat arrived.
debug_flag=
[ "${DEMO_DEBUG:-0}" = 1 ] && debug_flag=--debug-mode
step "run-enclave --eif-path $EIF --memory $MEM --cpu-count $CPUS${debug_flag:+ $debug_flag} --vsock-uds $UDS --kms (returns at the heartbeat, vsock port 9000)"
t0=$(now_ms)
if ! timeout 300 "$NITROVM" run-enclave --eif-path "$EIF" --memory "$MEM" --cpu-count "$CPUS" \
	--enclave-name demo --vsock-uds "$UDS" --heartbeat-timeout 240 --kms $debug_flag \
	>"$W/run.json" 2>"$W/run.err"; then
	indent "$W/run.err"
	fail "run-enclave"
fi
t1=$(now_ms)
BOOT_MS=$((t1 - t0))
indent "$W/run.err"
indent "$W/run.json"
ENCLAVE_ID=$(sed -n 's/.*"EnclaveID": *"\([^"]*\)".*/\1/p' "$W/run.json" | head -n 1)
CID=$(sed -n 's/.*"EnclaveCID": *\([0-9]*\).*/\1/p' "$W/run.json" | head -n 1)
[ -n "$ENCLAVE_ID" ] || fail "no EnclaveID in the run-enclave output"
step "heartbeat received: enclave $ENCLAVE_ID (CID $CID) booted in $BOOT_MS ms"
echo "DEMO-RESULT boot_ms=$BOOT_MS"

# 3. The parent gets the document, then does the echo.
step "parent: waiting for the attestation document and the echo (port 5000, then CONNECT 5005)"
if ! wait "$PARENT_PID"; then
	PARENT_PID=
	indent "$W/parent.log"
	fail "parent program (attestation document or echo)"
fi
PARENT_PID=
indent "$W/parent.log"
# The parent exits 0 only when the echo came back intact.
grep -q '^parent: echo' "$W/parent.log" || fail "no echo answer in the parent's output"
echo "DEMO-RESULT echo=ok $(sed -n 's/^parent: echo[^:]*: //p' "$W/parent.log" | head -n 1)"
grep -q "^parent: enclave KMS Decrypt 1 with Recipient: secret sha256 $SECRET_SHA\$" "$W/parent.log" ||
	fail "the enclave did not get the secret back through KMS Decrypt with Recipient"
echo "DEMO-RESULT kms=ok sha256=$SECRET_SHA"

# The same Decrypt, with a document of the same EIF in the other mode.
other=debug-mode
[ -z "$DENY_MODE" ] && other=non-debug
step "kms: the same Decrypt with a $other document of this EIF (attestation issue ${DENY_MODE:+$DENY_MODE }--public-key <the enclave's Recipient key>): must be denied"
timeout 60 "$NITROVM" attestation issue --eif-path "$EIF" $DENY_MODE --public-key "$W/recipient.der" \
	--out "$W/other.cbor" >/dev/null 2>"$W/kms.err" || { indent "$W/kms.err"; fail "attestation issue"; }
if timeout 60 "$NITROVM" kms call Decrypt "{\"CiphertextBlob\":\"$(cat "$W/secret.ct")\",\"Recipient\":{\"AttestationDocument\":\"$(base64 <"$W/other.cbor" | tr -d '\n')\",\"KeyEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}}" \
	>"$W/kms-denied.json" 2>"$W/kms-denied.err"; then
	fail "KMS answered a $other document"
fi
indent "$W/kms-denied.err"
grep -q 'AccessDeniedException' "$W/kms-denied.err" || fail "not AccessDeniedException"
echo "DEMO-RESULT kms_denied=$other"

if [ "${DEMO_DEBUG:-0}" = 1 ]; then
	step "enclave console (debug mode)"
	timeout 20 "$NITROVM" console --enclave-id "$ENCLAVE_ID" --disconnect-timeout 2 2>&1 |
		grep -v '^[[:space:]]*$' | tail -n 15 | indent || true
fi

# 4. Verify the document against the local CA's root, the EIF's PCR0 (zeros
# in debug mode, as on Nitro) and the nonce.
step "ca export: the local attestation root"
timeout 60 "$NITROVM" ca export --out "$W/root.pem" >"$W/ca.json" || fail "ca export"
indent "$W/ca.json"
want_pcr0=$PCR0
if [ "${DEMO_DEBUG:-0}" = 1 ]; then
	want_pcr0=000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
fi
step "attestation verify --root root.pem --pcr 0=${want_pcr0%"${want_pcr0#????????????????}"}... --nonce $NONCE_HEX attestation.cbor"
if ! timeout 60 "$NITROVM" attestation verify --root "$W/root.pem" --pcr "0=$want_pcr0" \
	--nonce "$NONCE_HEX" "$W/attestation.cbor" >"$W/verify.json" 2>"$W/verify.err"; then
	indent "$W/verify.json" "$W/verify.err"
	fail "attestation verify"
fi
# PCRs 5-15 are zeros: show the document without them.
awk '/"([5-9]|1[0-5])": "/ { next }
	{ if (n++) { if ($0 ~ /^ *}/) sub(/,$/, "", prev); print prev }; prev = $0 }
	END { if (n) print prev; print "(PCRs 5-15: zeros, not shown)" }' "$W/verify.json" | indent
grep -q '"Valid": true' "$W/verify.json" || fail "attestation document not valid"
echo "DEMO-RESULT attestation=verified pcr0=$want_pcr0 nonce=$NONCE_HEX"
sed -n '/"CertificateChain"/,/]/p' "$W/verify.json" | sed -n 's/^ *"\(.*\)",*$/DEMO-RESULT chain=\1/p'

# 5. What nitro-cli would list, then terminate.
step "describe-enclaves"
timeout 60 "$NITROVM" describe-enclaves >"$W/describe.json" || fail "describe-enclaves"
indent "$W/describe.json"
grep -q "\"EnclaveID\": \"$ENCLAVE_ID\"" "$W/describe.json" || fail "enclave not listed"
grep -q '"State": "RUNNING"' "$W/describe.json" || fail "enclave not RUNNING"
grep -q "\"PCR0\": \"$PCR0\"" "$W/describe.json" || fail "describe-enclaves PCR0 differs from the EIF's"

step "terminate-enclave --enclave-id $ENCLAVE_ID"
timeout 60 "$NITROVM" terminate-enclave --enclave-id "$ENCLAVE_ID" >"$W/term.json" 2>"$W/term.err" ||
	{ indent "$W/term.err"; fail "terminate-enclave"; }
ENCLAVE_ID=
indent "$W/term.err"
indent "$W/term.json"
grep -q '"Terminated": true' "$W/term.json" || fail "not terminated"
[ "$(timeout 60 "$NITROVM" describe-enclaves)" = "[]" ] || fail "enclaves left after terminate"
echo "DEMO-RESULT terminated=yes"
echo "DEMO-RESULT ok"
