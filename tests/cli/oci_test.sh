#!/usr/bin/env bash
# ctrust image digest on OCI image layouts built locally with umoci and skopeo (no
# registry): however the same busybox root filesystem is split into layers (one, three,
# with whiteouts, with an opaque directory, members in reverse order), compressed (gzip,
# zstd, none) or described (OCI or Docker media types), the digest is the one of the
# directory itself and of umoci's unpacked copy; every single change changes it; per-file
# digests equal `fsverity digest`; hostile layers and tampered blobs are refused (exit 3).
source "$(dirname "$0")/lib.sh"

skip() {
  if [ "${CI:-}" = "true" ]; then
    fail "CI must run this test: $*"
    finish
    exit 1
  fi
  echo "skipping: $*" >&2
  exit 0
}
[ "$(id -u)" -eq 0 ] || skip "needs root (owners, devices, umoci unpack)"
for tool in skopeo umoci fsverity busybox tar python3; do
  command -v "$tool" >/dev/null || skip "$tool is missing (scripts/setup installs it)"
done

cd "$WORK"
digest() { "$CTRUST" image digest "$@"; }

# A small busybox root filesystem with various types, modes and owners.
mkdir -p r/bin r/etc r/usr/bin r/lib r/tmp r/home/user r/var/empty r/srv/www r/dev
chmod 0755 r r/bin r/etc r/usr r/usr/bin r/lib r/home r/var r/var/empty r/srv r/srv/www r/dev
cp /bin/busybox r/bin/busybox
for t in sh ls cat echo; do ln -s busybox "r/bin/$t"; done
ln -s ../../bin/busybox r/usr/bin/env
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' >r/etc/passwd
echo "welcome" >r/etc/motd
echo "secret" >r/etc/shadow && chmod 0640 r/etc/shadow && chgrp 42 r/etc/shadow
echo "export PS1=x" >r/home/user/.profile
chown -R 1000:1000 r/home/user && chmod 0700 r/home/user
chmod 1777 r/tmp
head -c 300000 /dev/urandom >r/lib/data.bin
ln r/lib/data.bin r/lib/hard.bin
cp /bin/busybox r/usr/bin/tool && chmod 4755 r/usr/bin/tool
python3 -c "import os; os.setxattr('r/usr/bin/tool', 'security.capability', bytes.fromhex('0100000201000000000000000000000000000000'))"
echo "<html>" >r/srv/www/index.html
echo odd >"r/etc/name with spaces"
echo odd >r/etc/$'\xff\xfe-not-utf8'
: >r/etc/empty
mkfifo r/tmp/fifo
mknod r/dev/null c 1 3 && chmod 0666 r/dev/null
find r -exec touch -h -d '2020-01-01' {} +

d0=$(digest r)
check_eq "directory digest" "$(grep -cE '^sha256:[0-9a-f]{64}$' <<<"$d0")" "1"

# umoci: one layer per stage; each stage's tree is copied over the unpacked previous one
# (removals become whiteouts in the next layer).
new_image() {  # new_image LAYOUT TAG
  [ -d "$1" ] || umoci init --layout "$1"
  umoci new --image "$1:$2"
}
stage() {  # stage LAYOUT TAG COMMAND...: unpack, run COMMAND in the rootfs, repack
  local layout=$1 tag=$2
  shift 2
  rm -rf bundle
  umoci unpack --image "$layout:$tag" bundle >/dev/null
  (cd bundle/rootfs && "$@")
  umoci repack --image "$layout:$tag" bundle
  rm -rf bundle
}
copy_all() { cp -a "$WORK/r/." .; }
copy_some() { for p in "$@"; do cp -a --parents "$p" .; done; }

new_image L one
stage L one copy_all

new_image L three
stage L three bash -c "cd '$WORK/r' && cp -a --parents bin etc '$WORK/bundle/rootfs/'"
stage L three bash -c "cd '$WORK/r' && cp -a --parents usr lib dev '$WORK/bundle/rootfs/'"
stage L three copy_all

# A file and a directory added early, then removed: whiteouts in the second layer.
new_image L whiteout
stage L whiteout bash -c "cp -a '$WORK/r/.' . && echo gone >etc/removed && mkdir -p opt/gone/deep && touch opt/gone/deep/x"
stage L whiteout bash -c "rm -rf etc/removed opt"
# /srv replaced whole by a later layer: an opaque directory hides the junk below it.
new_image L opaque
stage L opaque bash -c "cp -a '$WORK/r/.' . && mkdir -p srv/junk && echo j >srv/junk/file && echo j >srv/www/stale"
umoci insert --image L:opaque --opaque r/srv /srv

for tag in one three whiteout opaque; do
  check "digest oci:L:$tag" digest "oci:L:$tag"
  check_eq "oci:L:$tag equals the directory" "$(cat "$WORK/.out")" "$d0"
done
manifest_json=$(python3 -c "
import json; i = json.load(open('L/index.json'))
d = [m['digest'] for m in i['manifests'] if m['annotations']['org.opencontainers.image.ref.name'] == 'whiteout'][0]
print(open('L/blobs/' + d.replace(':', '/')).read())")
check_eq "whiteout variant has two layers" "$(python3 -c "import json, sys; print(len(json.loads(sys.argv[1])['layers']))" "$manifest_json")" "2"

# umoci's own unpack of the image gives the same digest.
umoci unpack --image L:three unpacked >/dev/null
check_eq "umoci unpack rootfs" "$(digest unpacked/rootfs)" "$d0"

# Compressions and manifest formats, rewritten by skopeo.
skopeo copy -q --dest-compress-format zstd oci:L:three oci:Lzstd:three
skopeo copy -q --dest-compress-format gzip oci:L:three oci:Lgzip:three
skopeo copy -q --dest-decompress oci:L:three dir:plain
skopeo copy -q --dest-oci-accept-uncompressed-layers dir:plain oci:Lplain:three
skopeo copy -q --format v2s2 oci:L:three oci:Ldocker:three
layer_types() {
  python3 -c "
import json, sys; l = sys.argv[1]; i = json.load(open(l + '/index.json'))
m = json.load(open(l + '/blobs/' + i['manifests'][0]['digest'].replace(':', '/')))
print(' '.join(sorted(set(x['mediaType'].rsplit('/', 1)[-1] for x in m['layers']))))" "$1"
}
check_eq "zstd layers" "$(layer_types Lzstd)" "vnd.oci.image.layer.v1.tar+zstd"
check_eq "plain layers" "$(layer_types Lplain)" "vnd.oci.image.layer.v1.tar"
check_eq "docker layers" "$(layer_types Ldocker)" "vnd.docker.image.rootfs.diff.tar.gzip"
for l in Lzstd Lgzip Lplain Ldocker; do
  check "digest oci:$l" digest "oci:$l:three"
  check_eq "oci:$l equals the directory" "$(cat "$WORK/.out")" "$d0"
  check_eq "oci:$l without a tag (one image)" "$(digest "oci:$l")" "$d0"
done
# A policy created from a layout lists the same files with the same digests as one created
# from the directory (and is tied to the same image digest), whatever the compression.
policy() {  # policy SOURCE OUT [OPTIONS]
  local src=$1 out=$2
  shift 2
  "$CTRUST" policy create --from "$src" --name p --issuer t --not-before 2026-01-01T00:00:00Z \
    --not-after 2027-01-01T00:00:00Z --out "$out" "$@"
}
check "policy from the directory" policy r p-dir.json
# A name that is not UTF-8 cannot be written in a JSON policy: refused, unless excluded.
check_exit "policy --all refuses a non-UTF-8 name" 3 policy r p-dir-all.json --all
check_eq "and names it" "$(grep -c 'not-utf8" is not UTF-8' "$WORK/.err")" "1"
skip_odd=(--exclude '/etc/[^/]*-not-utf8')
check "policy from the directory, --all" policy r p-dir-all.json --all "${skip_odd[@]}"
for l in L Lzstd Lplain; do
  check "policy from oci:$l" policy "oci:$l:three" "p-$l.json"
  check "same policy from oci:$l" cmp p-dir.json "p-$l.json"
  check "policy from oci:$l, --all" policy "oci:$l:three" "p-$l-all.json" --all "${skip_odd[@]}"
  check "same policy from oci:$l, --all" cmp p-dir-all.json "p-$l-all.json"
done
check_eq "the policy lists busybox" "$(grep -c '"/bin/busybox"' p-L.json)" "1"
check_exit "policy from a malformed oci: source" 2 policy oci: p-bad.json
check_eq "one thread" "$(digest --threads 1 oci:L:three)" "$d0"
check_eq "four threads" "$(digest --threads 4 oci:L:three)" "$d0"

# Hand-made layouts: tars written by GNU tar or python, blobs and index.json written here.
cat >mklayout.py <<'PY'
import hashlib, json, os, sys
# mklayout.py DIR TAG MEDIATYPE LAYER...: an OCI layout with one image of these layers.
out, tag, media, layers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
os.makedirs(out + '/blobs/sha256', exist_ok=True)
def blob(data, mt):
    h = hashlib.sha256(data).hexdigest()
    open(out + '/blobs/sha256/' + h, 'wb').write(data)
    return {'mediaType': mt, 'digest': 'sha256:' + h, 'size': len(data)}
config = blob(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
              'application/vnd.oci.image.config.v1+json')
ls = [blob(open(p, 'rb').read(), media) for p in layers]
m = blob(json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                     'config': config, 'layers': ls}).encode(),
         'application/vnd.oci.image.manifest.v1+json')
m['annotations'] = {'org.opencontainers.image.ref.name': tag}
open(out + '/oci-layout', 'w').write('{"imageLayoutVersion":"1.0.0"}')
open(out + '/index.json', 'w').write(json.dumps({'schemaVersion': 2, 'manifests': [m]}))
PY
tarlayer='application/vnd.oci.image.layer.v1.tar'
# Every member in reverse order (children before their directories, the root last), hard
# links, xattrs, and a sparse file, as GNU tar writes them.
truncate -s 5M r/lib/sparse && printf 'x' | dd of=r/lib/sparse bs=1 seek=3000000 conv=notrunc status=none
d_sparse=$(digest r)
(cd r && find . | LC_ALL=C sort -r >../members)
tar --xattrs --xattrs-include='*' --numeric-owner --sparse --no-recursion -C r -cf rev.tar -T members
check_eq "reverse-order GNU tar has a sparse member" "$(tar -tvf rev.tar 2>/dev/null | grep -c 'lib/sparse')" "1"
python3 mklayout.py Lrev rev "$tarlayer" rev.tar
check_eq "reverse order, sparse file" "$(digest oci:Lrev:rev)" "$d_sparse"
rm r/lib/sparse

# Names as Go's archive/tar writes them: raw bytes in PAX path records, no hdrcharset. An
# NFD name and a non-UTF-8 name must stay byte for byte what they are on disk.
python3 - <<'PY'
def rec(k, v):
    body = b' ' + k + b'=' + v + b'\n'
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body
def hdr(name, size, typ, mode=b'0000755'):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = mode + b'\0'
    h[108:116] = b'0000000\0'
    h[116:124] = b'0000000\0'
    h[124:136] = b'%011o\0' % size
    h[136:148] = b'00000000000\0'
    h[156:157] = typ
    h[257:265] = b'ustar\x0000'
    h[148:156] = b'        '
    h[148:156] = b'%06o\0 ' % sum(h)
    return bytes(h)
pad = lambda b: b + b'\0' * (-len(b) % 512)
out = hdr(b'./', 0, b'5')
for name in [b'nfd-e\xcc\x81', b'nfc-\xc3\xa9', b'bad-\xff\xfe']:
    p = rec(b'path', name)
    out += hdr(b'PaxHeaders/x', len(p), b'x') + pad(p) + hdr(b'placeholder', 3, b'0', b'0000644') + pad(b'abc')
open('gopax.tar', 'wb').write(out + b'\0' * 1024)
PY
mkdir names && chmod 0755 names
for n in $'nfd-e\xcc\x81' $'nfc-\xc3\xa9' $'bad-\xff\xfe'; do printf abc >"names/$n"; done
python3 mklayout.py Lnames t "$tarlayer" gopax.tar
check_eq "PAX names stay raw bytes (NFD, non-UTF-8)" "$(digest oci:Lnames)" "$(digest names)"

# Per-file fs-verity digests in the manifest equal `fsverity digest` of umoci's unpacked files.
check "manifest" digest --manifest m.txt oci:L:three
mismatch=0
count=0
while IFS= read -r -d '' f; do
  rel=${f#unpacked/rootfs}
  esc=$(python3 -c "import sys; p=sys.argv[1].encode('utf-8','surrogateescape'); print(''.join(chr(b) if 0x20<b<0x7f and b!=0x5c else '\\\\x%02x'%b for b in p))" "$rel")
  want=$(fsverity digest "$f" | head -1 | cut -d' ' -f1)
  got=$(P="$esc" awk '$1 == ENVIRON["P"] { for (i = 1; i <= NF; i++) if ($i ~ /^fsverity=/) print substr($i, 10) }' m.txt)
  count=$((count + 1))
  [ "$got" == "$want" ] || { mismatch=$((mismatch + 1)); echo "mismatch for $rel: $got vs $want" >&2; }
done < <(find unpacked/rootfs -type f -print0)
check_eq "every file equals fsverity digest ($count files)" "$mismatch" "0"
check_eq "capability from the layer" "$(grep -c '^/usr/bin/tool f 4755 0 0 .* xattr.security.capability=0100000201' m.txt)" "1"
check_eq "device from the layer" "$(grep -c '^/dev/null c 0666 0 0 rdev=1:3$' m.txt)" "1"
check_eq "hard link from the layer" "$(grep '^/lib/hard.bin ' m.txt | cut -d' ' -f2-)" "$(grep '^/lib/data.bin ' m.txt | cut -d' ' -f2-)"

# Every single change, added as one more layer with umoci insert, changes the digest, to
# the digest of the directory changed the same way.
mkdir s
changed() {  # changed NAME DIR-COMMAND INSERT-ARGS...
  local name=$1 cmd=$2
  shift 2
  rm -rf c && cp -a r c
  (cd c && bash -c "$cmd")
  local want
  want=$(digest c)
  umoci insert --image L:one --tag "$name" "$@"
  local got
  got=$(digest "oci:L:$name")
  if [ "$want" != "$d0" ] && [ "$got" == "$want" ]; then pass; else
    fail "$name: layout $got, directory $want, unchanged $d0"
  fi
}
cp -a r/etc/motd s/byte && printf 'W' | dd of=s/byte conv=notrunc status=none
changed one-byte "printf 'W' | dd of=etc/motd conv=notrunc status=none" s/byte /etc/motd
cp -a r/etc/motd s/mode && chmod g+w s/mode
changed mode-bit "chmod g+w etc/motd" s/mode /etc/motd
cp -a r/etc/motd s/owner && chown 7:7 s/owner
changed owner "chown 7:7 etc/motd" s/owner /etc/motd
ln -s ls s/link && touch -h -d '2020-01-01' s/link
changed symlink-target "ln -sfn ls bin/sh" s/link /bin/sh
touch s/empty && chmod 0644 s/empty
changed empty-file "touch etc/new && chmod 0644 etc/new" s/empty /etc/new
mkdir s/dir && chmod 0755 s/dir
changed empty-dir "mkdir var/new && chmod 0755 var/new" s/dir /var/new
changed removed-file "rm etc/motd" --whiteout /etc/motd
changed whiteout-dir "rm -r home" --whiteout /home

# `oci:DIR` naming a directory whose name contains ':' is that directory; otherwise the tag
# follows the last ':'.
cp -a Lzstd "odd:name"
check_eq "a layout dir with ':'" "$(digest oci:odd:name)" "$d0"
check_eq "a layout dir with ':' and a tag" "$(digest oci:odd:name:three)" "$d0"
check_exit "an unknown tag" 3 digest oci:L:nope
check_eq "the error lists the tags" "$(grep -c "no image tagged nope in L; tags: one, three" "$WORK/.err")" "1"
check_exit "several images and no tag" 3 digest oci:L
check_exit "an empty tag" 2 digest oci:L:
check_exit "no layout" 3 digest oci:missing

# A tampered blob is refused, naming it.
cp -a Lplain tampered
blob=$(python3 -c "
import json; i = json.load(open('tampered/index.json'))
m = json.load(open('tampered/blobs/' + i['manifests'][0]['digest'].replace(':', '/')))
print(max(m['layers'], key=lambda l: l['size'])['digest'].replace(':', '/'))")
printf 'X' | dd of="tampered/blobs/$blob" bs=1 seek=2000 conv=notrunc status=none
check_exit "tampered layer" 3 digest oci:tampered
check_eq "tampered layer named" "$(grep -c "blob ${blob/\//:} does not match its digest" "$WORK/.err")" "1"

# Hostile layers in otherwise valid layouts.
python3 - <<'PY'
import io, tarfile
def tar(path, members):
    with tarfile.open(path, 'w', format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg in members:
            i = tarfile.TarInfo(name)
            if kind == 'file':
                i.size = len(arg)
                t.addfile(i, io.BytesIO(arg))
            elif kind == 'symlink':
                i.type, i.linkname = tarfile.SYMTYPE, arg
                t.addfile(i)
            elif kind == 'hardlink':
                i.type, i.linkname = tarfile.LNKTYPE, arg
                t.addfile(i)
tar('dotdot.tar', [('../escape', 'file', b'x')])
tar('deep-dotdot.tar', [('a/../../escape', 'file', b'x')])
tar('absolute.tar', [('/etc/escape', 'file', b'x')])
tar('symlink1.tar', [('lib', 'symlink', '../../etc')])
tar('symlink2.tar', [('lib/passwd', 'file', b'x')])
tar('hardlink.tar', [('x', 'hardlink', '../../etc/shadow')])
tar('dangling.tar', [('x', 'hardlink', 'nothing/here')])
PY
hostile() {  # hostile NAME MESSAGE LAYER...
  local name=$1 msg=$2
  shift 2
  python3 mklayout.py "H$name" t "$tarlayer" "$@"
  check_exit "hostile $name" 3 digest "oci:H$name"
  if grep -q -- "$msg" "$WORK/.err"; then pass; else fail "hostile $name: $(cat "$WORK/.err")"; fi
}
hostile dotdot "member name with '..'" dotdot.tar
hostile deep-dotdot "member name with '..'" deep-dotdot.tar
hostile absolute "absolute member name" absolute.tar
hostile symlink "written through the symlink /lib" symlink1.tar symlink2.tar
hostile hardlink "member name with '..'" hardlink.tar
hostile dangling "which does not exist" dangling.tar
check_eq "one error line" "$(wc -l <"$WORK/.err")" "1"
finish
