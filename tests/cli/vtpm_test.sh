#!/usr/bin/env bash
# `ctrust vtpm` with real swtpm/swtpm_setup: a container's vTPM has an EK certificate that
# openssl verifies against the local vTPM CA, keeps its PCRs across suspend/resume, is
# reported dead (exit 1) when its swtpm is killed, and leaves nothing behind when destroyed.
source "$(dirname "$0")/lib.sh"

missing=()
for t in swtpm swtpm_setup openssl jq; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  echo "vtpm test: missing ${missing[*]} (scripts/setup installs them)" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

R=$WORK/vtpm
cleanup() {
  for pidf in "$R"/tpms/*/swtpm.pid; do [ -f "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

check "create" "$CTRUST" vtpm create --root "$R" web-1 --json
tcti=$(jq -r .tcti "$WORK/.out")
pid=$(jq -r .pid "$WORK/.out")
check_eq "status running" "$(jq -r .status "$WORK/.out")" running
check_eq "root is private" "$(stat -c %a "$R")" 700
check_eq "state dir is private" "$(stat -c %a "$(jq -r .state_dir "$WORK/.out")")" 700
check "ek certificate" "$CTRUST" tpm ek --tcti "$tcti" --certificate "$WORK/ek.pem" --public "$WORK/ekpub.pem"
check "openssl verifies the EK certificate against the vTPM CA" openssl verify \
  -CAfile "$R/ca/swtpm-localca-rootca-cert.pem" -untrusted "$R/ca/issuercert.pem" "$WORK/ek.pem"
check_eq "certificate is for this EK" \
  "$(openssl x509 -in "$WORK/ek.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" \
  "$(openssl pkey -pubin -in "$WORK/ekpub.pem" -outform DER | sha256sum)"
check "AK present" "$CTRUST" tpm ak --tcti "$tcti" --json
check_exit "same id twice" 3 "$CTRUST" vtpm create --root "$R" web-1
check_exit "bad id" 2 "$CTRUST" vtpm create --root "$R" ../x
check_exit "over the maximum" 3 "$CTRUST" vtpm create --root "$R" --max 1 web-2
check_eq "the reason names the limit" "$(grep -c 'limit' "$WORK/.err")" 1

check "extend" "$CTRUST" tpm extend --tcti "$tcti" --pcr 10 --digest sha256:$(printf '%064d' 7)
check "pcrread" "$CTRUST" tpm pcrread --tcti "$tcti" sha256:10 --json
pcr=$(jq -r '.sha256["10"]' "$WORK/.out")
check "suspend" "$CTRUST" vtpm suspend --root "$R" web-1
check "list" "$CTRUST" vtpm list --root "$R" --json
check_eq "listed as suspended" "$(jq -r '.[0].status' "$WORK/.out")" suspended
# Gone, or a zombie waiting for init to reap it.
running() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
check_exit "the process is gone" 1 running "$pid"
check "resume" "$CTRUST" vtpm resume --root "$R" web-1 --json
pid=$(jq -r .pid "$WORK/.out")
check "pcrread after resume" "$CTRUST" tpm pcrread --tcti "$tcti" sha256:10 --json
check_eq "PCR 10 survived" "$(jq -r '.sha256["10"]' "$WORK/.out")" "$pcr"

kill -9 "$pid"
for _ in $(seq 100); do running "$pid" || break; sleep 0.02; done
check_exit "list reports a dead vTPM with exit 1" 1 "$CTRUST" vtpm list --root "$R"
check_eq "listed as dead" "$(grep -c ' dead ' "$WORK/.out")" 1
check_exit "no fresh TPM under the same id" 3 "$CTRUST" vtpm create --root "$R" web-1
check "destroy" "$CTRUST" vtpm destroy --root "$R" web-1
check "list is empty" "$CTRUST" vtpm list --root "$R" --json
check_eq "nothing left" "$(jq length "$WORK/.out")" 0
check_eq "no state left" "$(ls "$R/tpms" | wc -l)" 0
check_exit "destroy unknown" 3 "$CTRUST" vtpm destroy --root "$R" web-1

check "create for archive" "$CTRUST" vtpm create --root "$R" web-3 --json
check "destroy --archive" "$CTRUST" vtpm destroy --root "$R" web-3 --archive
check_eq "archived" "$(ls "$R/archive" | grep -c '^web-3-')" 1
check "vtpm --help" "$CTRUST" vtpm --help

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
