#!/usr/bin/env bash
# OCI image digest throughput: the trees of bench/image_bench.sh (100,000 small files; four
# 256 MiB files of random data), each packed by GNU tar as one layer, uncompressed, gzip
# (-1) and zstd (-3), in a hand-written OCI layout in the page cache, digested by
# `ctrust image digest oci:...` (all cores). For reference, the same tree as a directory.
# Rates are per uncompressed byte and per file. Medians of BENCH_RUNS.
#   bench/oci_bench.sh [CTRUST]    (default: build/default/src/cmd/ctrust/ctrust)
set -euo pipefail
ctrust=${1:-build/default/src/cmd/ctrust/ctrust}
runs=${BENCH_RUNS:-5}
small=${BENCH_SMALL_FILES:-100000}
work=$(mktemp -d /tmp/ctrust-oci-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

. "$(dirname "${BASH_SOURCE[0]}")/make_trees.sh"
make_trees "$work" "$small"

cat >"$work/mklayout.py" <<'PY'
import hashlib, json, os, sys
# mklayout.py DIR MEDIATYPE LAYER: a layout with one image of one layer (blob written by name).
out, media, layer = sys.argv[1:4]
os.makedirs(out + '/blobs/sha256', exist_ok=True)
def put(data=None, path=None, mt=''):
    h = hashlib.sha256()
    if path:
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
        size = os.path.getsize(path)
        os.rename(path, out + '/blobs/sha256/' + h.hexdigest())
    else:
        h.update(data)
        size = len(data)
        open(out + '/blobs/sha256/' + h.hexdigest(), 'wb').write(data)
    return {'mediaType': mt, 'digest': 'sha256:' + h.hexdigest(), 'size': size}
cfg = put(b'{"architecture":"amd64","os":"linux"}', mt='application/vnd.oci.image.config.v1+json')
m = put(json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                    'config': cfg, 'layers': [put(path=layer, mt=media)]}).encode(),
        mt='application/vnd.oci.image.manifest.v1+json')
open(out + '/oci-layout', 'w').write('{"imageLayoutVersion":"1.0.0"}')
open(out + '/index.json', 'w').write(json.dumps({'schemaVersion': 2, 'manifests': [m]}))
PY

base=application/vnd.oci.image.layer.v1.tar
for t in small large; do
  tar --numeric-owner -C "$work/$t" -cf "$work/$t.tar" .
  gzip -1 -c "$work/$t.tar" >"$work/$t.tar.gz"
  zstd -q -3 -c "$work/$t.tar" >"$work/$t.tar.zst"
  python3 "$work/mklayout.py" "$work/oci-$t-plain" "$base" "$work/$t.tar"
  python3 "$work/mklayout.py" "$work/oci-$t-gzip" "$base+gzip" "$work/$t.tar.gz"
  python3 "$work/mklayout.py" "$work/oci-$t-zstd" "$base+zstd" "$work/$t.tar.zst"
done
find "$work" -type f -exec cat {} + >/dev/null

med() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
timeit() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
echo "| tree | source | blob | time | files/s | uncompressed GB/s |"
echo "|---|---|---|---|---|---|"
for t in small large; do
  files=$(find "$work/$t" -type f | wc -l)
  bytes=$(find "$work/$t" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}')
  want=$("$ctrust" image digest "$work/$t")
  for src in dir plain gzip zstd; do
    if [ "$src" = dir ]; then arg="$work/$t" blob="-"; else
      arg="oci:$work/oci-$t-$src"
      blob=$(find "$work/oci-$t-$src/blobs" -type f -size +100k -printf '%s\n' | awk '{printf "%.2f GB", $1 / 1e9}')
      [ "$("$ctrust" image digest "$arg")" == "$want" ] || { echo "digest of $arg differs from the directory's" >&2; exit 1; }
    fi
    : >"$work/t"
    for _ in $(seq "$runs"); do timeit "$ctrust" image digest "$arg" >>"$work/t"; done
    s=$(med <"$work/t")
    printf '| %s: %d files, %.2f GB | %s | %s | %.3f s | %.0f | %.2f |\n' "$t" "$files" \
      "$(echo "$bytes / 1000000000" | bc -l)" "$src" "$blob" "$s" "$(echo "$files / $s" | bc -l)" \
      "$(echo "$bytes / $s / 1000000000" | bc -l)"
  done
done
