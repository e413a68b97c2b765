#!/usr/bin/env bash
# ctrust digest against independent tools: fsverity-utils' `fsverity digest` and
# coreutils' sha*sum, byte for byte.
source "$(dirname "$0")/lib.sh"
command -v fsverity >/dev/null || { echo "fsverity (Debian package fsverity) is missing" >&2; exit 1; }

cd "$WORK"
sizes=(0 1 4095 4096 4097 $((128 * 4096)) $((128 * 4096 + 1)) $((1048576 + 7)))
for n in "${sizes[@]}"; do
  head -c "$n" /dev/urandom >"f$n"
done

for n in "${sizes[@]}"; do
  for alg in sha256 sha512; do
    for salt in "" "00" "deadbeef" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; do
      want=$(fsverity digest --hash-alg="$alg" ${salt:+--salt="$salt"} "f$n")
      got=$("$CTRUST" digest --fsverity --alg "$alg" ${salt:+--salt "$salt"} "f$n")
      check_eq "fsverity f$n $alg salt=[$salt]" "$got" "$want"
    done
  done
done

# Other Merkle block sizes.
for bs in 1024 65536; do
  for n in 4097 $((1048576 + 7)); do
    want=$(fsverity digest --block-size="$bs" "f$n")
    got=$("$CTRUST" digest --fsverity --block-size "$bs" "f$n")
    check_eq "fsverity block size $bs f$n" "$got" "$want"
  done
done

# Plain digests equal coreutils, several files per call.
for alg in sha1 sha256 sha384 sha512; do
  want=$("${alg}sum" f0 f4097 f1048583)
  got=$("$CTRUST" digest --alg "$alg" f0 f4097 f1048583)
  check_eq "$alg sum format" "$got" "$want"
done

# Names that sha256sum escapes.
name=$'odd\\name\nwith newline'
cp f1 "$name"
check_eq "escaped name" "$("$CTRUST" digest "$name")" "$(sha256sum "$name")"

# Standard input, and the fd offset is not what decides what is hashed.
check_eq "stdin pipe" "$(cat f4097 | "$CTRUST" digest -)" "$(sha256sum - <f4097)"
check_eq "stdin file" "$("$CTRUST" digest - <f4097)" "$(sha256sum - <f4097)"

# JSON output carries the same digest.
json=$("$CTRUST" digest --fsverity --json f4097)
got=$(python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["alg"]+":"+d["digest"]+" "+d["file"])' <<<"$json")
check_eq "json" "$got" "$(fsverity digest f4097)"

# Bad arguments and missing files: a clear error, the right exit code, good files still done.
check_exit "sha1 fs-verity refused" 3 "$CTRUST" digest --fsverity --alg sha1 f1
check_exit "salt too long" 3 "$CTRUST" digest --fsverity --salt "$(printf '%066d' 0)" f1
check_exit "odd block size" 3 "$CTRUST" digest --fsverity --block-size 3000 f1
check_exit "unknown alg" 3 "$CTRUST" digest --alg md5 f1
check_exit "no files" 2 "$CTRUST" digest
check_exit "missing file" 3 "$CTRUST" digest f1 missing f0
check_eq "good files still printed" "$(wc -l <"$WORK/.out")" "2"
check_eq "one error line" "$(grep -c '^ctrust: error: .*missing' "$WORK/.err")" "1"
check_exit "directory" 3 "$CTRUST" digest "$WORK"
check "help" "$CTRUST" digest --help

finish
