#!/usr/bin/env bash
# ctrust image digest on root filesystem directories: per-file digests equal
# `fsverity digest`; the digest ignores timestamps and copy order; every single change to
# the tree changes it; symlinks are recorded, never followed.
source "$(dirname "$0")/lib.sh"
command -v fsverity >/dev/null || { echo "fsverity (Debian package fsverity) is missing" >&2; exit 1; }
root_only() {
  if [ "$(id -u)" -eq 0 ]; then return 0; fi
  [ "${CI:-}" = "true" ] && { fail "CI runs as root, but this test does not"; return 1; }
  echo "skipping (needs root): $*" >&2
  return 1
}

cd "$WORK"
mkdir -p r/bin r/etc r/lib/deep r/empty-dir
cp "$(command -v busybox || echo /bin/ls)" r/bin/tool
ln -s tool r/bin/sh
ln -s ../../../../../etc/passwd r/etc/escape     # must be recorded, not followed
head -c 100000 /dev/urandom >r/lib/lib.so
ln r/lib/lib.so r/lib/hardlink.so
: >r/etc/empty
truncate -s 10M r/lib/sparse                     # a hole, read as zeros
printf 'x' | dd of=r/lib/sparse bs=1 seek=5000000 conv=notrunc status=none
echo odd >"r/etc/name with spaces"
echo odd >r/etc/$'new\nline'
echo odd >r/etc/$'\xff\xfe-not-utf8'
mkfifo r/fifo
long=r/lib/deep
for i in $(seq 1 60); do long="$long/directory-level-$i"; done
mkdir -p "$long" && echo deep >"$long/leaf"
if [ "$(id -u)" -eq 0 ]; then
  mknod r/null c 1 3
  python3 -c "import os; os.setxattr('r/bin/tool', 'security.capability', bytes.fromhex('0100000201000000000000000000000000000000'))"
fi
python3 -c "import os; os.setxattr('r/etc/empty', 'user.test', b'hello')" 2>/dev/null || true

check "digest" "$CTRUST" image digest r
d0=$(cat "$WORK/.out")
check_eq "digest format" "$(grep -cE '^sha256:[0-9a-f]{64}$' <<<"$d0")" "1"
check "manifest" "$CTRUST" image digest --manifest m.txt r
check_eq "same digest with --manifest" "$(cat "$WORK/.out")" "$d0"
check_eq "digest is SHA-256 of the manifest" "sha256:$(sha256sum <m.txt | cut -d' ' -f1)" "$d0"
check_eq "header line" "$(head -1 m.txt)" "ctrust-image-manifest 1"
sorted=$(python3 -c "
import re, sys
paths = [re.sub(rb'\\\\x([0-9a-f]{2})', lambda m: bytes([int(m.group(1), 16)]), l.split(b' ')[0])
         for l in open('m.txt', 'rb').read().split(b'\\n')[1:] if l]
print('sorted' if paths == sorted(paths) else 'not sorted')")
check_eq "sorted by raw path bytes" "$sorted" "sorted"
check_eq "one line per entry" "$(($(wc -l <m.txt) - 1))" "$(find r -print0 | tr -cd '\0' | wc -c)"

# Every regular file's digest equals fsverity digest.
mismatch=0
while IFS= read -r -d '' f; do
  want=$(fsverity digest "$f" | head -1 | cut -d' ' -f1)
  rel=${f#r}
  esc=$(python3 -c "import sys; p=sys.argv[1].encode('utf-8','surrogateescape'); print(''.join(chr(b) if 0x20<b<0x7f and b!=0x5c else '\\\\x%02x'%b for b in p))" "$rel")
  got=$(P="$esc" awk '$1 == ENVIRON["P"] { for (i = 1; i <= NF; i++) if ($i ~ /^fsverity=/) print substr($i, 10) }' m.txt)
  [ "$got" == "$want" ] || { mismatch=$((mismatch + 1)); echo "mismatch for $rel: $got vs $want" >&2; }
done < <(find r -type f -print0)
check_eq "every file equals fsverity digest" "$mismatch" "0"
check_eq "symlink recorded, not followed" "$(grep -c '^/etc/escape l 0777 .* target=../../../../../etc/passwd$' m.txt)" "1"
check_eq "names escaped" "$(grep -c '^/etc/new\\x0aline f\|^/etc/name\\x20with\\x20spaces f\|^/etc/\\xff\\xfe-not-utf8 f' m.txt)" "3"
check_eq "sparse file size" "$(grep -c '^/lib/sparse f 0644 .* size=10485760 ' m.txt)" "1"
if [ "$(id -u)" -eq 0 ]; then
  check_eq "device" "$(grep -c '^/null c 0644 0 0 rdev=1:3$' m.txt)" "1"
  check_eq "capability recorded" "$(grep -c '^/bin/tool f .* xattr.security.capability=01000002' m.txt)" "1"
fi
check "named xattr" "$CTRUST" image digest --xattr user.test --manifest m2.txt r
if grep -q 'xattr.user.test=68656c6c6f' m2.txt; then pass; else
  # Filesystems without user xattrs (tmpfs before 6.6) cannot hold it; then it is absent.
  python3 -c "import os; os.getxattr('r/etc/empty', 'user.test')" 2>/dev/null && fail "user.test not recorded" || pass
fi

# The same tree however it was copied, with other timestamps, in another order.
cp -a r copy
find copy -exec touch -h -d '2001-02-03 04:05:06' {} +
check_eq "copy with other timestamps" "$("$CTRUST" image digest copy)" "$d0"
mkdir viatar && (cd r && tar --xattrs --xattrs-include='*' -cf - . | tar --xattrs --xattrs-include='*' -C ../viatar -xpf -)
check_eq "tar round trip" "$("$CTRUST" image digest viatar)" "$d0"
check_eq "one thread gives the same" "$("$CTRUST" image digest --threads 1 r)" "$d0"

# Every single change changes the digest.
changed() {  # changed NAME CMD...: run CMD on a fresh copy in c/, expect a new digest
  local name=$1
  shift
  rm -rf c && cp -a r c
  (cd c && "$@")
  local d
  d=$("$CTRUST" image digest c)
  if [ "$d" != "$d0" ]; then pass; else fail "$name did not change the digest"; fi
}
changed "one byte" bash -c 'printf "\x01" | dd of=lib/lib.so bs=1 seek=500 conv=notrunc status=none'
changed "a mode bit" chmod g+w etc/empty
changed "setuid" chmod u+s bin/tool
changed "a symlink target" bash -c 'ln -sfn toolx bin/sh'
changed "an added empty file" touch etc/new
changed "an added empty dir" mkdir etc/newdir
changed "a removed file" rm etc/empty
changed "a removed empty dir" rmdir empty-dir
changed "a file became a symlink" bash -c 'rm etc/empty && ln -s motd etc/empty'
changed "a rename" mv etc/empty etc/empty2
if [ "$(id -u)" -eq 0 ]; then
  changed "an owner" chown 1 etc/empty
  changed "a group" chgrp 1 etc/empty
  changed "a capability" python3 -c "import os; os.removexattr('bin/tool', 'security.capability')"
fi

# A running process's root: /proc/PID/root of a chrooted busybox.
if root_only "/proc/PID/root" && command -v busybox >/dev/null; then
  cp "$(command -v busybox)" r/bin/busybox
  d1=$("$CTRUST" image digest r)
  chroot r /bin/busybox sleep 30 &
  pid=$!
  sleep 0.3
  check_eq "/proc/PID/root of a chrooted process" "$("$CTRUST" image digest /proc/$pid/root)" "$d1"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
fi

# Errors.
check_exit "missing root" 3 "$CTRUST" image digest nope
check_exit "not a directory" 3 "$CTRUST" image digest r/etc/empty
check_exit "missing OCI layout" 3 "$CTRUST" image digest oci:layout
check "help" "$CTRUST" image digest --help
finish
