#!/usr/bin/env bash
# Image digest throughput (issue 3's figures): a tree of many small files and a tree of a
# few large files, in the page cache, hashed by `ctrust image digest` (all cores) and by
# `fsverity digest` over the same files (one process, one core). Medians of BENCH_RUNS.
#   bench/image_bench.sh [CTRUST]    (default: build/default/src/cmd/ctrust/ctrust)
set -euo pipefail
ctrust=${1:-build/default/src/cmd/ctrust/ctrust}
runs=${BENCH_RUNS:-5}
small=${BENCH_SMALL_FILES:-100000}
work=$(mktemp -d /tmp/ctrust-image-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

. "$(dirname "${BASH_SOURCE[0]}")/make_trees.sh"
make_trees "$work" "$small"

med() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
timeit() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
for t in small large; do
  files=$(find "$work/$t" -type f | wc -l)
  bytes=$(find "$work/$t" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}')
  : >"$work/c" && : >"$work/f"
  for _ in $(seq "$runs"); do
    timeit "$ctrust" image digest "$work/$t" >>"$work/c"
    timeit bash -c "find '$work/$t' -type f -print0 | xargs -0 fsverity digest" >>"$work/f"
  done
  c=$(med <"$work/c")
  f=$(med <"$work/f")
  printf '| %s: %d files, %.2f GB | ctrust image digest %.3f s: %.0f files/s, %.2f GB/s | fsverity digest %.3f s: %.0f files/s, %.2f GB/s |\n' \
    "$t" "$files" "$(echo "$bytes / 1000000000" | bc -l)" "$c" "$(echo "$files / $c" | bc -l)" \
    "$(echo "$bytes / $c / 1000000000" | bc -l)" "$f" "$(echo "$files / $f" | bc -l)" "$(echo "$bytes / $f / 1000000000" | bc -l)"
done
