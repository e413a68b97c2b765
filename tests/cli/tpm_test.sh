#!/usr/bin/env bash
# `ctrust tpm` against a real swtpm, cross-checked with tpm2-tools both ways: our quotes
# pass tpm2_checkquote, tpm2_quote's pass ours, and tampering is rejected by ours.
source "$(dirname "$0")/lib.sh"

missing=()
for t in swtpm tpm2_quote tpm2_checkquote tpm2_createek tpm2_createak tpm2_flushcontext; do
  command -v "$t" >/dev/null || missing+=("$t")
done
if ((${#missing[@]})); then
  echo "tpm test: missing ${missing[*]} (scripts/setup installs them)" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

export TSS2_LOG=all+none
state=$WORK/state
mkdir -p "$state"
sock=$WORK/tpm.sock
swtpm socket --tpm2 --server "type=unixio,path=$sock" --ctrl "type=unixio,path=$sock.ctrl" \
  --tpmstate "dir=$state" --flags not-need-init,startup-clear --daemon --pid "file=$WORK/swtpm.pid"
trap 'kill "$(cat "$WORK/swtpm.pid")" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
T="swtpm:path=$sock"
export TPM2TOOLS_TCTI=$T

# info, pcrread, extend
check "tpm info" "$CTRUST" tpm info --tcti "$T"
check_eq "info names the family" "$(grep -c 'family: *2.0' "$WORK/.out")" 1
check "tpm info --json" "$CTRUST" tpm info --tcti "$T" --json
check_eq "json lists sha256" "$(jq -r '.pcr_banks | index("sha256") != null' "$WORK/.out")" true
printf 'event' >"$WORK/event"
check "extend PCR 16 with a file" "$CTRUST" tpm extend --tcti "$T" --pcr 16 --data "$WORK/event" --json
ev=$(sha256sum "$WORK/event" | cut -d' ' -f1)
check_eq "extended the file's sha256" "$(jq -r .extended.sha256 "$WORK/.out")" "$ev"
want=$(printf '%064d%s' 0 "$ev" | xxd -r -p | sha256sum | cut -d' ' -f1)
check "pcrread --json" "$CTRUST" tpm pcrread --tcti "$T" sha256:16 --json
check_eq "PCR 16 is the extend of zero" "$(jq -r '.sha256["16"]' "$WORK/.out")" "$want"
check "tpm2_pcrread agrees" tpm2_pcrread sha256:16
check_eq "tpm2_pcrread value" "$(grep -o '0x[0-9A-F]*' "$WORK/.out" | tr 'A-F' 'a-f')" "0x$want"
check "extend with a digest" "$CTRUST" tpm extend --tcti "$T" --pcr 10 --digest "sha256:$ev"
check_exit "extend needs data or digest" 2 "$CTRUST" tpm extend --tcti "$T" --pcr 10
check_exit "bad PCR index" 2 "$CTRUST" tpm extend --tcti "$T" --pcr 24 --data "$WORK/event"
check_exit "bad digest" 2 "$CTRUST" tpm extend --tcti "$T" --pcr 10 --digest sha256:abcd

# ctrust's AK and quote, checked by tpm2_checkquote
check "tpm ak" "$CTRUST" tpm ak --tcti "$T" --public "$WORK/ak.pem" --json
ak_name=$(jq -r .name "$WORK/.out")
check "tpm ak again reuses the key" "$CTRUST" tpm ak --tcti "$T" --json
check_eq "same AK" "$(jq -r .name "$WORK/.out")" "$ak_name"
check_exit "ak of another type at the same handle" 3 "$CTRUST" tpm ak --tcti "$T" --alg rsa
check "ctrust quote" "$CTRUST" tpm quote --tcti "$T" --pcr-list sha256:10,16 \
  --qualification 0badc0de --message "$WORK/m" --signature "$WORK/s" --pcr "$WORK/p"
check "tpm2_checkquote accepts ctrust's quote" tpm2_checkquote --public "$WORK/ak.pem" \
  --message "$WORK/m" --signature "$WORK/s" --pcr "$WORK/p" --qualification 0badc0de
check_exit "tpm2_checkquote rejects a wrong nonce" 1 tpm2_checkquote --public "$WORK/ak.pem" \
  --message "$WORK/m" --signature "$WORK/s" --pcr "$WORK/p" --qualification 0badc0df
check "ctrust checkquote accepts its own quote" "$CTRUST" tpm checkquote --public "$WORK/ak.pem" \
  --message "$WORK/m" --signature "$WORK/s" --pcr "$WORK/p" --qualification 0badc0de
check "an RSA AK at another handle" "$CTRUST" tpm ak --tcti "$T" --alg rsa --handle 0x81010003 \
  --public "$WORK/ak-rsa.pem"
check "ctrust quote with the RSA AK" "$CTRUST" tpm quote --tcti "$T" --ak-alg rsa \
  --ak-handle 0x81010003 -l sha256:0,10+sha1:10 -q 01 -m "$WORK/mr" -s "$WORK/sr" -o "$WORK/pr"
check "tpm2_checkquote accepts the RSA quote" tpm2_checkquote -u "$WORK/ak-rsa.pem" \
  -m "$WORK/mr" -s "$WORK/sr" -f "$WORK/pr" -q 01
check "ctrust checkquote accepts the RSA quote" "$CTRUST" tpm checkquote -u "$WORK/ak-rsa.pem" \
  -m "$WORK/mr" -s "$WORK/sr" -f "$WORK/pr" -q 01

# tpm2_quote's quote, checked by ctrust
tpm2_createek -c "$WORK/ek.ctx" -G rsa -u "$WORK/ek.pub" >/dev/null
tpm2_createak -C "$WORK/ek.ctx" -c "$WORK/ak.ctx" -G ecc -g sha256 -s ecdsa -u "$WORK/tak.pem" \
  -f pem -n "$WORK/tak.name" >/dev/null
tpm2_flushcontext -t
check "tpm2_quote" tpm2_quote -c "$WORK/ak.ctx" -l sha256:10,16 -q 1234abcd -m "$WORK/tm" \
  -s "$WORK/ts" -o "$WORK/tp"
tpm2_flushcontext -t
check "ctrust checkquote accepts tpm2_quote's quote" "$CTRUST" tpm checkquote \
  --public "$WORK/tak.pem" --message "$WORK/tm" --signature "$WORK/ts" --pcr "$WORK/tp" \
  --qualification 1234abcd --json
check_eq "json says valid" "$(jq -r .valid "$WORK/.out")" true
check_eq "json lists the PCRs" "$(jq -r '.pcrs.sha256["16"]' "$WORK/.out")" "$want"
check_exit "wrong nonce rejected" 1 "$CTRUST" tpm checkquote --public "$WORK/tak.pem" \
  --message "$WORK/tm" --signature "$WORK/ts" --pcr "$WORK/tp" --qualification 1234abce
check_eq "the reason names the nonce" "$(grep -c 'nonce' "$WORK/.out")" 1
cp "$WORK/tm" "$WORK/tm2"
printf '\x01' | dd of="$WORK/tm2" bs=1 seek=40 conv=notrunc status=none
check_exit "changed message rejected" 1 "$CTRUST" tpm checkquote --public "$WORK/tak.pem" \
  --message "$WORK/tm2" --signature "$WORK/ts" --pcr "$WORK/tp" --qualification 1234abcd
cp "$WORK/ts" "$WORK/ts2"
printf '\x01' | dd of="$WORK/ts2" bs=1 seek=20 conv=notrunc status=none
check_exit "changed signature rejected" 1 "$CTRUST" tpm checkquote --public "$WORK/tak.pem" \
  --message "$WORK/tm" --signature "$WORK/ts2" --pcr "$WORK/tp" --qualification 1234abcd
cp "$WORK/tp" "$WORK/tp2"
printf '\x01' | dd of="$WORK/tp2" bs=1 seek=150 conv=notrunc status=none
check_exit "changed PCR value rejected" 1 "$CTRUST" tpm checkquote --public "$WORK/tak.pem" \
  --message "$WORK/tm" --signature "$WORK/ts" --pcr "$WORK/tp2" --qualification 1234abcd
check_eq "the reason names the PCR digest" "$(grep -c 'PCR digest' "$WORK/.out")" 1
check_exit "another key rejected" 1 "$CTRUST" tpm checkquote --public "$WORK/ak.pem" \
  --message "$WORK/tm" --signature "$WORK/ts" --pcr "$WORK/tp" --qualification 1234abcd
head -c 100 "$WORK/tp" >"$WORK/tp3"
check_exit "truncated PCR file is an input error" 3 "$CTRUST" tpm checkquote \
  --public "$WORK/tak.pem" --message "$WORK/tm" --signature "$WORK/ts" --pcr "$WORK/tp3"
check "without --qualification the nonce is not checked" "$CTRUST" tpm checkquote \
  --public "$WORK/tak.pem" --message "$WORK/tm" --signature "$WORK/ts" --pcr "$WORK/tp" --json
check_eq "json says so" "$(jq -r .nonce_checked "$WORK/.out")" false
check_eq "and warns about replays" "$(grep -c 'may be a replay' "$WORK/.err")" 1
check_exit "an empty --qualification requires an empty nonce" 1 "$CTRUST" tpm checkquote \
  --public "$WORK/tak.pem" --message "$WORK/tm" --signature "$WORK/ts" --qualification ""
check_exit "bad nonce hex is a usage error" 2 "$CTRUST" tpm checkquote --public "$WORK/tak.pem" \
  --message "$WORK/tm" --signature "$WORK/ts" --qualification xyz

# EK
check "tpm ek" "$CTRUST" tpm ek --tcti "$T" --public "$WORK/ek.pem" --json
check_eq "no EK certificate on a bare swtpm" "$(jq -r .certificate "$WORK/.out")" null
check_exit "--certificate without one is an error" 3 "$CTRUST" tpm ek --tcti "$T" \
  --certificate "$WORK/ek.crt"
tpm2_readpublic -c "$WORK/ek.ctx" -f pem -o "$WORK/tek.pem" >/dev/null 2>&1 || \
  tpm2_print -t TPM2B_PUBLIC -f pem "$WORK/ek.pub" >"$WORK/tek.pem"
check_eq "same EK as tpm2_createek" "$(openssl pkey -pubin -in "$WORK/ek.pem" -outform DER | sha256sum)" \
  "$(openssl pkey -pubin -in "$WORK/tek.pem" -outform DER | sha256sum)"

# errors
check_exit "no TPM there" 3 "$CTRUST" tpm info --tcti swtpm:path=$WORK/none.sock
check_eq "one decoded line" "$(wc -l <"$WORK/.err")" 1
check_exit "bad PCR list" 2 "$CTRUST" tpm pcrread --tcti "$T" sha999:1
check_exit "bad handle" 2 "$CTRUST" tpm ak --tcti "$T" --handle 0x1234
check "tpm --help" "$CTRUST" tpm --help
check "tpm quote --help" "$CTRUST" tpm quote --help

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
