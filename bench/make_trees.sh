# Sourced by bench/image_bench.sh and bench/oci_bench.sh: writes the two benchmark trees
# under $1 (`small`: $2 files of 0-8 KiB in 500 directories, seeded; `large`: four 256 MiB
# files of random data) and reads them once so that they are in the page cache.
make_trees() {
  python3 - "$1" "$2" <<'PY'
import os, sys, random
work, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for i in range(n):
    d = os.path.join(work, 'small', 'd%03d' % (i % 500))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'f%06d' % i), 'wb') as f:
        f.write(rnd.randbytes(rnd.randint(0, 8192)))
os.makedirs(os.path.join(work, 'large'))
for i in range(4):
    with open(os.path.join(work, 'large', 'blob%d' % i), 'wb') as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
PY
  local t
  for t in small large; do find "$1/$t" -type f -exec cat {} + >/dev/null; done
}
