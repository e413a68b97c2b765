#!/usr/bin/env bash
# Malformed input to every ctrust command that reads untrusted bytes.
#
# Each malformed input must be rejected cleanly: exit code 3 (kExitError), exactly one line
# on stderr starting with `ctrust: error:` (short and without control characters), no
# crash (exit < 128) and no hang (every call runs under `timeout 10`). A failed
# `log convert` must not leave its output file behind. Valid prefixes of a log (cut at a
# record boundary) must be accepted.
#
# Run by CTest (cli_malformed) with CTRUST=<path to the ctrust binary>. Prints
# `N passed, M failed` at the end and exits 1 if any check failed.
set -euo pipefail

: "${CTRUST:?set CTRUST to the ctrust binary}"
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export LC_ALL=C  # byte-wise patterns below ([[:cntrl:]], lengths)
shopt -s nullglob dotglob

passed=0
failed=0
rc=0
problems=""
err_lines=()

# Runs ctrust with stdout in $tmp/out and stderr in $tmp/err (also in err_lines); sets rc.
# Everything after it is bash builtins: ~1500 runs must stay well inside the CTest timeout.
run() {
  rc=0
  timeout -k 2 10 "$CTRUST" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null || rc=$?
  mapfile -t err_lines <"$tmp/err"
}

# Records a check from $problems (empty: passed).
record() {
  local name=$1 line
  if [[ -z $problems ]]; then
    passed=$((passed + 1))
    return
  fi
  failed=$((failed + 1))
  echo "FAIL: $name: ${problems%; }"
  echo "  exit code: $rc"
  echo "  stderr (${#err_lines[@]} lines, first 3, cut at 300 chars):"
  for line in "${err_lines[@]:0:3}"; do
    printf '    | %s\n' "${line:0:300}"
  done
}

# Sets $problems for a run that must fail with exactly `want` error lines.
check_error() {
  local want=$1 line
  problems=""
  if ((rc == 124 || rc == 137)); then
    problems+="timed out after 10 s; "
  elif ((rc >= 128)); then
    problems+="crashed (signal $((rc - 128))); "
  elif ((rc != 3)); then
    problems+="exit code $rc, expected 3; "
  fi
  if ((${#err_lines[@]} != want)); then
    problems+="${#err_lines[@]} lines on stderr, expected $want; "
  fi
  for line in "${err_lines[@]}"; do
    if [[ $line != "ctrust: error: "* ]]; then
      problems+="a stderr line does not start with 'ctrust: error: '; "
      break
    fi
  done
  for line in "${err_lines[@]}"; do
    if ((${#line} > 400)); then
      problems+="an error line is longer than 400 characters; "
      break
    fi
  done
  for line in "${err_lines[@]}"; do
    if [[ $line == *[[:cntrl:]]* ]]; then
      problems+="stderr holds control characters; "
      break
    fi
  done
}

# Sets $problems for a run that must succeed with nothing on stderr.
check_ok() {
  problems=""
  ((rc == 0)) || problems+="exit code $rc, expected 0; "
  [[ ! -s $tmp/err ]] || problems+="unexpected output on stderr; "
}

# ctrust ARGS... must fail with one error line.
expect_error() {
  local name=$1
  shift
  run "$@"
  check_error 1
  record "$name"
}

# ctrust log convert --to FORM LOG OUT must fail and leave no OUT (nor a temporary file).
expect_convert_error() {
  local name=$1 form=$2 log=$3 left
  rm -rf "$tmp/conv"
  mkdir "$tmp/conv"
  run log convert --to "$form" "$log" "$tmp/conv/out"
  check_error 1
  left=("$tmp"/conv/*)
  if ((${#left[@]} > 0)); then
    problems+="left files behind: ${left[*]##*/}; "
  fi
  record "$name"
}

# ctrust ARGS... must succeed silently on stderr.
expect_ok() {
  local name=$1
  shift
  run "$@"
  check_ok
  record "$name"
}

# Every log-reading command must reject LOG (verified against PCRS).
expect_log_error() {
  local name=$1 log=$2 pcrs=${3:-$tmp/valid3.pcrs}
  expect_error "$name: log show" log show "$log"
  expect_error "$name: log show --json" log show --json "$log"
  expect_error "$name: log replay" log replay "$log"
  expect_error "$name: log verify" log verify --pcrs "$pcrs" "$log"
  expect_convert_error "$name: log convert --to ascii" ascii "$log"
  expect_convert_error "$name: log convert --to binary" binary "$log"
}

# ---- a valid 3-entry binary log, and its record boundaries -------------------------------

printf 'hello\n' >a
printf 'buffer contents' >b
printf 'world\n' >c
bounds=(0)
"$CTRUST" log append valid3.bin a
bounds+=("$(stat -c %s valid3.bin)")
"$CTRUST" log append --template ima-buf valid3.bin b
bounds+=("$(stat -c %s valid3.bin)")
"$CTRUST" log append --template ima valid3.bin c
bounds+=("$(stat -c %s valid3.bin)")
size=${bounds[3]}
"$CTRUST" log replay valid3.bin >valid3.pcrs
"$CTRUST" log convert --to ascii valid3.bin valid3.txt
expect_ok "valid 3-entry log: log verify" log verify --pcrs valid3.pcrs valid3.bin
expect_ok "valid 3-entry ASCII log: log verify" log verify --pcrs valid3.pcrs valid3.txt

# ---- a binary log truncated at every byte ------------------------------------------------

# Every prefix that is not a record boundary must be rejected by every command; the
# boundaries (0 to 3 whole records) must be accepted.
declare -A boundary
for k in 0 1 2 3; do boundary[${bounds[$k]}]=$k; done
for ((n = 0; n <= size; n++)); do
  head -c "$n" valid3.bin >cut.bin
  if [[ -n ${boundary[$n]:-} ]]; then
    entries=${boundary[$n]}
    name="log cut at record boundary $n ($entries entries)"
    run log show cut.bin
    check_ok
    mapfile -t shown <"$tmp/out"
    ((${#shown[@]} == entries)) || problems+="log show printed ${#shown[@]} entries, expected $entries; "
    record "$name: log show"
    expect_ok "$name: log replay" log replay cut.bin
    "$CTRUST" log replay cut.bin >cut.pcrs 2>/dev/null || true
    expect_ok "$name: log verify" log verify --pcrs cut.pcrs cut.bin
    rm -rf conv && mkdir conv
    expect_ok "$name: log convert" log convert --to ascii cut.bin conv/out
  else
    name="log cut at byte $n of $size"
    expect_error "$name: log show" log show cut.bin
    expect_error "$name: log replay" log replay cut.bin
    expect_error "$name: log verify" log verify --pcrs valid3.pcrs cut.bin
    expect_convert_error "$name: log convert" ascii cut.bin
  fi
done

# ---- malformed binary records ------------------------------------------------------------

python3 - <<'EOF'
import hashlib
import struct


def u32(n):
    return struct.pack('<I', n)


def field(b):
    return u32(len(b)) + b


def record(data, tname=b'ima-ng', pcr=10, name_len=None, data_len=None, legacy=False):
    digest = hashlib.sha1(data).digest()
    out = u32(pcr) + digest + u32(len(tname) if name_len is None else name_len) + tname
    if not legacy:
        out += u32(len(data) if data_len is None else data_len)
    return out + data


def ng(name=b'/usr/bin/hello\0'):
    return field(b'sha256:\0' + hashlib.sha256(b'hello\n').digest()) + field(name)


good = record(ng())
# Records the reader itself must reject (their header is wrong): followed by some bytes, so
# that the error is not just the end of the file.
header_cases = {
    # Absurd lengths in the record header: as the first record (format detection) and
    # after a good one (the reader's own checks).
    'datalen_ffffffff': record(ng(), data_len=0xffffffff),
    'datalen_over_limit': record(ng(), data_len=(1 << 20) + 1),
    'namelen_ffffffff': record(ng(), name_len=0xffffffff),
    'namelen_zero': record(ng(), tname=b'', name_len=0),
    'namelen_33': record(ng(), tname=b'ima-ng' + b'x' * 27),
    'unknown_template': record(ng(), tname=b'ima-xyz'),
    'pcr_999': record(ng(), pcr=999),
    'pcr_24': record(ng(), pcr=24),
    'legacy_namelen_ffffffff': record(b'\x11' * 20 + u32(0xffffffff) + b'abc', tname=b'ima', legacy=True),
}
# Well-formed records whose template data is malformed: the whole file is the record(s).
data_cases = {
    'name_without_nul': record(ng(b'/usr/bin/hello')),
    'name_embedded_nul': record(ng(b'/usr/bin\0/hello\0')),
    'name_empty_field': record(ng(b'')),
    'name_huge': record(ng(b'/' + b'a' * 5000 + b'\0')),
    'field_len_ffffffff': record(u32(0xffffffff) + b'sha256:\0' + b'\0' * 32),
    'field_missing': record(field(b'sha256:\0' + b'\0' * 32)),
    'field_trailing_bytes': record(ng() + b'\0\0\0'),
    'dng_no_nul': record(field(b'sha256:' + b'\x11' * 32) + field(b'/x\0')),
    'dng_wrong_size': record(field(b'sha256:\0' + b'\x11' * 20) + field(b'/x\0')),
}
for name, rec in header_cases.items():
    open(f'first_{name}.bin', 'wb').write(rec + b'\0' * 64)
    open(f'second_{name}.bin', 'wb').write(good + rec + b'\0' * 64)
for name, rec in data_cases.items():
    open(f'first_{name}.bin', 'wb').write(rec)
    open(f'second_{name}.bin', 'wb').write(good + rec)
EOF

for f in first_*.bin second_*.bin; do
  expect_log_error "binary ${f%.bin}" "$f"
done

head -c 4096 /dev/urandom >random.bin
expect_log_error "binary: 4096 random bytes" random.bin

: >empty.bin
run log show empty.bin
check_ok
[[ ! -s $tmp/out ]] || problems+="printed entries for an empty log; "
record "empty log: log show (0 entries)"
expect_ok "empty log: log replay" log replay empty.bin
"$CTRUST" log replay empty.bin >empty.pcrs
expect_ok "empty log: log verify against zero PCRs" log verify --pcrs empty.pcrs empty.bin
# (against valid3.pcrs, whose PCR 10 is extended, it is rejected: tests/cli/log_test.sh)
rm -rf conv && mkdir conv
expect_ok "empty log: log convert" log convert --to ascii empty.bin conv/out

# ---- malformed ASCII lines ---------------------------------------------------------------

python3 - <<'EOF'
hexd = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03'
td = 'c8acbfa06c0d5bf7696db445ba8489fa2393c0d5'  # FORMATS.md worked example, sha1
good = f'10 {td} ima-ng sha256:{hexd} /usr/bin/hello\n'
cases = {
    'bad_hex_template_digest': f'10 {"zz" + td[2:]} ima-ng sha256:{hexd} /x',
    'bad_hex_file_digest': f'10 {td} ima-ng sha256:{"g" + hexd[1:]} /x',
    'bad_hex_buf': f'10 {td} ima-buf sha256:{hexd} /x 00zz',
    'odd_hex_template_digest': f'10 {td}0 ima-ng sha256:{hexd} /x',
    'odd_hex_file_digest': f'10 {td} ima-ng sha256:{hexd[:-1]} /x',
    'odd_hex_sig': f'10 {td} ima-sig sha256:{hexd} /x 030',
    'unknown_template': f'10 {td} ima-foo sha256:{hexd} /x',
    'unknown_template_control_chars': f'10 {td} ima-\x1b[31m\r sha256:{hexd} /x',
    'missing_pcr_only': '10',
    'missing_template_name': f'10 {td}',
    'missing_all_fields': f'10 {td} ima-ng',
    'missing_name': f'10 {td} ima-ng sha256:{hexd}',
    'missing_digest_alg': f'10 {td} ima-ng {hexd} /x',
    'digest_control_chars': f'10 {td} ima-ng \x1b]0;x\x07{hexd} /x',
    'extra_field_ng': f'10 {td} ima-ng sha256:{hexd} /x extra',
    'extra_field_buf': f'10 {td} ima-buf sha256:{hexd} /x 00 extra',
    'extra_field_legacy': f'10 {td} ima {hexd[:40]} /x extra',
    'pcr_999': f'999 {td} ima-ng sha256:{hexd} /x',
    'pcr_24': f'24 {td} ima-ng sha256:{hexd} /x',
    'pcr_overflow': f'99999999999 {td} ima-ng sha256:{hexd} /x',
    'embedded_nul': f'10 {td} ima-ng sha256:{hexd} /x\0y',
    'name_huge': f'10 {td} ima-ng sha256:{hexd} /{"a" * 5000}',
    'wrong_digest_size': f'10 {td} ima-ng sha256:{hexd[:40]} /x',
}
for name, line in cases.items():
    open(f'ascii_{name}.txt', 'w', newline='').write(good + line + '\n')
# A 3 MB line (a plausible ima-buf record whose buffer is far over the limit).
open('ascii_line_3mb.txt', 'w', newline='').write(
    good + f'10 {td} ima-buf sha256:{hexd} /x ' + 'ab' * (3 << 19) + '\n')
# No final newline: a whole last line, and the only line.
open('ascii_no_final_newline.txt', 'w', newline='').write(good + good.rstrip('\n'))
open('ascii_no_final_newline_only.txt', 'w', newline='').write(good.rstrip('\n'))
EOF

for f in ascii_*.txt; do
  expect_log_error "${f%.txt}" "$f"
done

# ---- malformed PCR files for log verify --------------------------------------------------

python3 - <<'EOF'
good = open('valid3.pcrs').read().splitlines()
pcr10 = [l for l in good if l.startswith('PCR-10:')][0]
value = pcr10.split(': ')[1]
rest = [l for l in good if not l.startswith('PCR-10:')]
def write(name, lines):
    open(f'pcrs_{name}.txt', 'w').write('\n'.join(lines) + '\n')
write('bad_hex', rest + ['PCR-10: ' + 'zz' + value[2:]])
write('odd_hex', rest + ['PCR-10: ' + value[:-1]])
write('wrong_size', rest + ['PCR-10: ' + value[:-2]])
write('bad_number_letters', rest + ['PCR-1x: ' + value])
write('bad_number_empty', rest + ['PCR-: ' + value])
write('bad_number_negative', rest + ['PCR--1: ' + value])
write('bad_number_overflow', rest + ['PCR-99999999999: ' + value])
write('pcr_24', good + ['PCR-24: ' + value])
write('pcr_999', good + ['PCR-999: ' + value])
write('duplicate_same', good + [pcr10])
write('duplicate_different', good + ['PCR-10: ' + 'ab' * 32])
write('no_colon', rest + ['PCR-10 ' + value])
write('garbage_line', good + ['this is not a PCR line'])
write('tpm2_bad_number', ['sha256:', '  x : 0x' + value])
write('tpm2_pcr_24', ['sha256:', '  24: 0x' + value])
write('tpm2_unknown_bank', ['md5:', '  10: 0x' + value])
write('tpm2_unknown_bank_control_chars', ['\x1b[2J\x1b[31m:', '  10: 0x' + value])
open('pcrs_empty.txt', 'w').close()
open('pcrs_comments_only.txt', 'w').write('# nothing here\n\n')
EOF
head -c 4096 /dev/urandom >pcrs_random.txt

for f in pcrs_*.txt; do
  expect_error "PCR file ${f%.txt}: log verify" log verify --pcrs "$f" valid3.bin
done
expect_error "PCR file missing: log verify" log verify --pcrs "$tmp/no-such-file" valid3.bin
expect_error "PCR file sha256 values given as sha1: log verify" \
  log verify --pcrs "sha1,valid3.pcrs" valid3.bin

# ---- ctrust digest of files that cannot be read -----------------------------------------

mkdir adir
# Checks `ctrust digest FILES...`: one error line per bad file, every good file printed.
expect_digest() {
  local name=$1 bad=$2
  shift 2
  run digest "$@"
  local want f
  check_error "$bad"
  want=""
  for f in "$@"; do
    [[ -f $f ]] && want+="$(sha256sum "$f")"$'\n'
  done
  [[ "$(cat "$tmp/out")"$'\n' == "$want" || ( -z $want && ! -s $tmp/out ) ]] ||
    problems+="stdout is not the digests of the readable files; "
  record "$name"
}
expect_digest "digest: missing file" 1 no-such-file
expect_digest "digest: directory" 1 adir
expect_digest "digest: good, missing, good" 1 a no-such-file c
expect_digest "digest: good, directory, good" 1 a adir c
expect_digest "digest: missing, directory, good" 2 no-such-file adir b

echo "$passed passed, $failed failed"
((failed == 0)) || exit 1
