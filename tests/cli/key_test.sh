#!/usr/bin/env bash
# Integration test for `ctrust key`: generate, public, sign, verify; exit codes; and
# cross-checks with the independent `openssl` command line tool in both directions.
# Run by CTest with CTRUST=<path to the ctrust binary>.
set -euo pipefail

: "${CTRUST:?set CTRUST to the path of the ctrust binary}"
command -v openssl >/dev/null || { echo "openssl command not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0

fail() {
  echo "FAIL: $*" >&2
  echo "$passed passed, 1 failed"
  exit 1
}

pass() { passed=$((passed + 1)); }

# expect_exit WANT WHAT CMD...: runs CMD, keeping its stdout in $tmp/out and stderr in
# $tmp/err, and checks its exit status.
expect_exit() {
  local want=$1 what=$2
  shift 2
  local got=0
  "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
  if [[ $got -ne $want ]]; then
    fail "$what: expected exit $want, got $got from: $*
stdout: $(cat "$tmp/out")
stderr: $(cat "$tmp/err")"
  fi
  pass
}

# check WHAT CMD...: CMD must succeed.
check() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then pass; else fail "$what ($*)"; fi
}

# check_grep WHAT PATTERN FILE
check_grep() {
  if grep -Eq -- "$2" "$3"; then pass; else fail "$1: /$2/ not found in: $(cat "$3")"; fi
}

mode_of() { stat -c %a "$1"; }

msg=$tmp/message.txt
bad=$tmp/tampered.txt
printf 'the image may run /usr/bin/app\n' >"$msg"
printf 'the image may run /usr/bin/apq\n' >"$bad"

# --- help ---------------------------------------------------------------------------
for sub in generate public sign verify; do
  expect_exit 0 "key $sub --help" "$CTRUST" key "$sub" --help
  check_grep "key $sub --help has a description" '^[A-Z]' "$tmp/out"
done

# --- every key type: generate, public, sign, verify ----------------------------------
for type in ecdsa-p256 ecdsa-p384 ed25519 rsa2048 rsa3072 rsa4096; do
  key=$tmp/$type.key
  pub=$tmp/$type.pub
  sig=$tmp/$type.sig

  expect_exit 0 "generate $type" "$CTRUST" key generate --type "$type" --out "$key" \
    --public-out "$pub"
  check_grep "generate $type prints the fingerprint" '^sha256:[0-9a-f]{64}$' "$tmp/out"
  fingerprint=$(cat "$tmp/out")
  [[ $(mode_of "$key") == 600 ]] || fail "$type private key mode is $(mode_of "$key"), not 600"
  pass
  check_grep "$type private key is PKCS#8 PEM" '^-----BEGIN PRIVATE KEY-----$' "$key"
  check_grep "$type public key is PEM" '^-----BEGIN PUBLIC KEY-----$' "$pub"

  # The fingerprint is SHA-256 of the DER SubjectPublicKeyInfo, as openssl computes it.
  expected=sha256:$(openssl pkey -in "$key" -pubout -outform DER | sha256sum | cut -d' ' -f1)
  [[ $fingerprint == "$expected" ]] || fail "$type fingerprint $fingerprint != openssl $expected"
  pass

  expect_exit 0 "key public $type" "$CTRUST" key public "$key"
  check "key public $type prints the same PEM as --public-out" cmp "$tmp/out" "$pub"
  expect_exit 0 "key public $type --out" "$CTRUST" key public "$key" --out "$tmp/$type.pub2"
  check "key public --out $type writes the same PEM" cmp "$tmp/$type.pub2" "$pub"

  expect_exit 0 "sign $type" "$CTRUST" key sign --key "$key" --out "$sig" "$msg"
  [[ -s $sig ]] || fail "sign $type wrote an empty signature"
  pass
  expect_exit 0 "verify $type" "$CTRUST" key verify --pub "$pub" --signature "$sig" "$msg"
  check_grep "verify $type says so" '^signature verifies$' "$tmp/out"
  expect_exit 1 "verify $type rejects a tampered file" \
    "$CTRUST" key verify --pub "$pub" --signature "$sig" "$bad"
  check_grep "verify $type explains the rejection" 'signature does not verify' "$tmp/out"
done

# --- RSA paddings and hashes ----------------------------------------------------------
key=$tmp/rsa2048.key
pub=$tmp/rsa2048.pub
expect_exit 0 "sign rsa pkcs1" "$CTRUST" key sign --key "$key" --rsa-padding pkcs1 \
  --out "$tmp/pkcs1.sig" "$msg"
expect_exit 0 "verify rsa pkcs1" "$CTRUST" key verify --pub "$pub" --rsa-padding pkcs1 \
  --signature "$tmp/pkcs1.sig" "$msg"
expect_exit 1 "a pkcs1 signature does not verify as pss" "$CTRUST" key verify --pub "$pub" \
  --rsa-padding pss --signature "$tmp/pkcs1.sig" "$msg"
expect_exit 0 "sign rsa sha512" "$CTRUST" key sign --key "$key" --hash sha512 \
  --out "$tmp/sha512.sig" "$msg"
expect_exit 0 "verify rsa sha512" "$CTRUST" key verify --pub "$pub" --hash sha512 \
  --signature "$tmp/sha512.sig" "$msg"
expect_exit 1 "a sha512 signature does not verify as sha256" "$CTRUST" key verify --pub "$pub" \
  --hash sha256 --signature "$tmp/sha512.sig" "$msg"

# --- overwrite protection --------------------------------------------------------------
key=$tmp/ecdsa-p256.key
cp "$key" "$tmp/before.key"
expect_exit 3 "generate refuses to overwrite --out" \
  "$CTRUST" key generate --type ed25519 --out "$key"
check_grep "refusal names the file" "$key" "$tmp/err"
check_grep "refusal says what to do" '--force' "$tmp/err"
check "refused --out is unchanged" cmp "$key" "$tmp/before.key"
expect_exit 3 "generate refuses to overwrite --public-out" \
  "$CTRUST" key generate --type ed25519 --out "$tmp/new.key" --public-out "$tmp/ed25519.pub"
[[ ! -e $tmp/new.key ]] || fail "a refused generate still wrote its private key"
pass
expect_exit 0 "generate --force overwrites" \
  "$CTRUST" key generate --type ed25519 --out "$key" --force
if cmp -s "$key" "$tmp/before.key"; then fail "--force did not replace the key"; fi
pass
[[ $(mode_of "$key") == 600 ]] || fail "--force key mode is $(mode_of "$key"), not 600"
pass

# --- JSON -------------------------------------------------------------------------------
expect_exit 0 "generate --json" "$CTRUST" key generate --type ecdsa-p384 --out "$tmp/j.key" \
  --public-out "$tmp/j.pub" --json
check_grep "json type" '"type": "ecdsa-p384"' "$tmp/out"
check_grep "json private_key" "\"private_key\": \"$tmp/j.key\"" "$tmp/out"
check_grep "json public_key" "\"public_key\": \"$tmp/j.pub\"" "$tmp/out"
check_grep "json fingerprint" '"fingerprint": "sha256:[0-9a-f]{64}"' "$tmp/out"
if command -v python3 >/dev/null; then
  check "generate --json is valid JSON" python3 -m json.tool "$tmp/out"
fi

# --- usage errors (exit 2) and unreadable input (exit 3) ---------------------------------
expect_exit 2 "unknown key type" "$CTRUST" key generate --type dsa1024 --out "$tmp/x.key"
expect_exit 2 "generate without --out" "$CTRUST" key generate --type ed25519
expect_exit 2 "--hash with ed25519" "$CTRUST" key sign --key "$tmp/ed25519.key" --hash sha512 \
  --out "$tmp/x.sig" "$msg"
expect_exit 2 "--rsa-padding with ecdsa" "$CTRUST" key verify --pub "$tmp/ecdsa-p384.pub" \
  --rsa-padding pss --signature "$tmp/ecdsa-p384.sig" "$msg"
expect_exit 2 "sha1 is not offered" "$CTRUST" key sign --key "$tmp/rsa2048.key" --hash sha1 \
  --out "$tmp/x.sig" "$msg"
expect_exit 3 "verify with a missing signature" "$CTRUST" key verify --pub "$tmp/ed25519.pub" \
  --signature "$tmp/missing.sig" "$msg"
check_grep "missing signature is named" "missing.sig" "$tmp/err"
expect_exit 3 "verify a missing file" "$CTRUST" key verify --pub "$tmp/ed25519.pub" \
  --signature "$tmp/ed25519.sig" "$tmp/missing.txt"
printf 'not a key\n' >"$tmp/garbage.pem"
expect_exit 3 "sign with a garbage key" "$CTRUST" key sign --key "$tmp/garbage.pem" \
  --out "$tmp/x.sig" "$msg"
check_grep "garbage key error names the file" "garbage.pem" "$tmp/err"
check_grep "garbage key error is one line" '^ctrust: error: ' "$tmp/err"
expect_exit 3 "verify with a garbage public key" "$CTRUST" key verify --pub "$tmp/garbage.pem" \
  --signature "$tmp/ed25519.sig" "$msg"
expect_exit 3 "verify with a private key as --pub" "$CTRUST" key verify \
  --pub "$tmp/rsa2048.key" --signature "$tmp/rsa2048.sig" "$msg"
: >"$tmp/empty.sig"
expect_exit 1 "an empty signature does not verify" "$CTRUST" key verify \
  --pub "$tmp/ed25519.pub" --signature "$tmp/empty.sig" "$msg"
head -c 100 /dev/urandom >"$tmp/random.sig"
expect_exit 1 "a random signature does not verify" "$CTRUST" key verify \
  --pub "$tmp/ecdsa-p256.pub" --signature "$tmp/random.sig" "$msg"

# --- cross-checks with openssl ---------------------------------------------------------
# openssl verifies ctrust's signatures...
expect_exit 0 "openssl verifies an ecdsa-p256 signature" openssl dgst -sha256 \
  -verify "$tmp/ecdsa-p256.pub" -signature "$tmp/ecdsa-p256.sig" "$msg"
expect_exit 1 "openssl rejects ecdsa-p256 on a tampered file" openssl dgst -sha256 \
  -verify "$tmp/ecdsa-p256.pub" -signature "$tmp/ecdsa-p256.sig" "$bad"
expect_exit 0 "openssl verifies an ed25519 signature" openssl pkeyutl -verify -pubin \
  -inkey "$tmp/ed25519.pub" -rawin -in "$msg" -sigfile "$tmp/ed25519.sig"
expect_exit 1 "openssl rejects ed25519 on a tampered file" openssl pkeyutl -verify -pubin \
  -inkey "$tmp/ed25519.pub" -rawin -in "$bad" -sigfile "$tmp/ed25519.sig"
expect_exit 0 "openssl verifies an ecdsa-p384 signature" openssl dgst -sha384 \
  -verify "$tmp/ecdsa-p384.pub" -signature "$tmp/ecdsa-p384.sig" "$msg"
expect_exit 0 "openssl verifies an rsa pss signature" openssl dgst -sha256 \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
  -verify "$tmp/rsa2048.pub" -signature "$tmp/rsa2048.sig" "$msg"

# ...and ctrust verifies openssl's signatures and uses openssl's keys.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/o256.key" 2>/dev/null
openssl pkey -in "$tmp/o256.key" -pubout -out "$tmp/o256.pub"
openssl dgst -sha256 -sign "$tmp/o256.key" -out "$tmp/o256.sig" "$msg"
expect_exit 0 "ctrust verifies an openssl ecdsa-p256 signature" \
  "$CTRUST" key verify --pub "$tmp/o256.pub" --signature "$tmp/o256.sig" "$msg"
expect_exit 1 "ctrust rejects the openssl signature on a tampered file" \
  "$CTRUST" key verify --pub "$tmp/o256.pub" --signature "$tmp/o256.sig" "$bad"
expect_exit 0 "ctrust signs with an openssl ecdsa-p256 key" \
  "$CTRUST" key sign --key "$tmp/o256.key" --out "$tmp/o256.ctrust.sig" "$msg"
expect_exit 0 "openssl verifies it" openssl dgst -sha256 -verify "$tmp/o256.pub" \
  -signature "$tmp/o256.ctrust.sig" "$msg"

openssl genpkey -algorithm ED25519 -out "$tmp/oed.key" 2>/dev/null
openssl pkey -in "$tmp/oed.key" -pubout -out "$tmp/oed.pub"
openssl pkeyutl -sign -inkey "$tmp/oed.key" -rawin -in "$msg" -out "$tmp/oed.sig"
expect_exit 0 "ctrust verifies an openssl ed25519 signature" \
  "$CTRUST" key verify --pub "$tmp/oed.pub" --signature "$tmp/oed.sig" "$msg"
expect_exit 0 "ctrust key public matches openssl" "$CTRUST" key public "$tmp/oed.key"
check "ctrust and openssl agree on the ed25519 public key" cmp "$tmp/out" "$tmp/oed.pub"

# An unsupported curve is refused with a clear message.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out "$tmp/k1.key" 2>/dev/null
expect_exit 3 "secp256k1 is refused" "$CTRUST" key sign --key "$tmp/k1.key" \
  --out "$tmp/x.sig" "$msg"
check_grep "secp256k1 refusal names the curve" 'secp256k1 is not supported' "$tmp/err"

echo "$passed passed, 0 failed"
