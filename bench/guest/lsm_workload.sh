# Run by busybox sh inside the QEMU guest of bench/lsm_workload_bench.sh (Debian's kernel,
# BPF LSM on): the workloads of bench/workload_bench.sh in a runc container of the python3
# image /img, with no agent ("off"), under ctrustd with enforcement.backend = "fanotify" and
# under "bpf-lsm" (enforce policy), interleaved round by round, the order alternating. Each
# variant starts its agent and container afresh in each round and warms up once (every
# workload) before it is timed; a first round that is not reported warms up the emulator. Prints "run WORKLOAD VARIANT ROUND NS" lines, "fail ..." for
# a workload that did not succeed, and "bench: done".
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
export TSS2_LOG=all+none
W=/work
ROUNDS=$(cat $W/rounds)
PY=$(cat $W/py)
NAMES="python-imports read-stdlib exec-true-200 tmpfs-files-2000 pipeline-100"
cmd() {
  case $1 in
    python-imports) echo "/usr/bin/python3 -c 'import json, email, http.client, xml.dom.minidom, asyncio, decimal, unittest, sqlite3'" ;;
    read-stdlib) echo "find /usr/lib/$PY -type f -exec cat {} + >/dev/null" ;;
    exec-true-200) echo 'i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i + 1)); done' ;;
    tmpfs-files-2000) echo 'd=/scratch/w$$; mkdir $d && i=0; while [ $i -lt 2000 ]; do echo x >$d/$i; i=$((i + 1)); done; cat $d/* >/dev/null && rm -rf $d' ;;
    pipeline-100) echo 'i=0; while [ $i -lt 100 ]; do echo x | cat | wc -l >/dev/null; i=$((i + 1)); done' ;;
  esac
}

agent_start() {  # BACKEND
  sed "s/@BACKEND@/$1/; s|@STATE@|$W/state-$1|" $W/ctrustd.toml.in >$W/ctrustd-$1.toml
  ctrustd --config $W/ctrustd-$1.toml >>$W/ctrustd-$1.log 2>&1 &
  AGENT=$!
  i=0
  while [ $i -lt 600 ]; do
    ctrust ps --socket $W/ctrustd.sock >/dev/null 2>&1 && break
    sleep 0.1
    i=$((i + 1))
  done
  ctrust policy load --socket $W/ctrustd.sock $W/wl-enforce.json >/dev/null
  got=$(ctrust ps --socket $W/ctrustd.sock --json | jq -r .backend)
  [ "$got" = "$1" ] || echo "fail agent: backend $got, want $1: $(tail -3 $W/ctrustd-$1.log)"
}
agent_stop() {
  kill $AGENT 2>/dev/null
  wait $AGENT 2>/dev/null
}
container_start() {  # ID HOOKS(yes|no)
  b=$W/bundles/$1
  rm -rf $b
  mkdir -p $b/rootfs $b/upper $b/work
  mount -t overlay overlay -o lowerdir=/img,upperdir=$b/upper,workdir=$b/work $b/rootfs
  (cd $b && runc spec)
  jq --arg s $W/ctrustd.sock --arg hooks "$2" '
    .process.terminal = false |
    .process.args = ["/bin/sh", "-c", "exec sleep 3600"] |
    .root = {"path": "rootfs", "readonly": false} |
    .linux.namespaces |= map(select(.type != "network")) |
    .mounts += [{"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev", "mode=1777", "size=64m"]}] |
    if $hooks == "no" then . else
      .annotations = {"io.ctrust.policy": "wl-enforce"} |
      .hooks = {"createRuntime": [{"path": "/usr/bin/ctrust", "args": ["ctrust", "hook", "createRuntime", "--socket", $s]}],
                "poststop": [{"path": "/usr/bin/ctrust", "args": ["ctrust", "hook", "poststop", "--socket", $s]}]}
    end' $b/config.json >$b/config.new && mv $b/config.new $b/config.json
  (cd $b && runc run -d "$1" </dev/null >/dev/null 2>$W/run.err) || echo "fail container $1: $(cat $W/run.err)"
}
container_stop() {
  runc kill "$1" KILL 2>/dev/null
  n=0
  while [ $n -lt 50 ] && runc state "$1" 2>/dev/null | grep -q '"running"'; do sleep 0.1; n=$((n + 1)); done
  runc delete -f "$1" 2>/dev/null
  umount $W/bundles/$1/rootfs 2>/dev/null
}
run_in() {  # ID WORKLOAD: prints the ns, or fails
  out=$(runc exec "$1" /usr/local/bin/timeit /bin/sh -c "$(cmd $2)" </dev/null 2>$W/exec.err)
  case "$out" in
    "ns="*" status=0") echo "${out#ns=}" | cut -d' ' -f1 ;;
    *) echo "fail $2 in $1: $out $(head -c 200 $W/exec.err)" >&2; echo 0 ;;
  esac
}
variant() {  # VARIANT ROUND (0: a warm-up round, not reported)
  id=wl-$1-$2
  if [ "$1" = off ]; then container_start $id no; else agent_start $1; container_start $id yes; fi
  for n in $NAMES; do run_in $id $n >/dev/null; done  # warm-up
  for n in $NAMES; do
    ns=$(run_in $id $n)
    [ "$2" = 0 ] || echo "run $n $1 $2 $ns"
  done
  if [ "$1" != off ]; then
    v=$(ctrust ps --socket $W/ctrustd.sock --json | jq --arg id $id '.containers[] | select(.id == $id) | .counts.violations')
    [ "$v" = 0 ] || echo "fail $id: $v violations: the workloads met the gate"
  fi
  container_stop $id
  [ "$1" = off ] || agent_stop
}

# Round 0 warms the emulator's translation cache for every program of every variant.
r=0
while [ $r -le $ROUNDS ]; do
  if [ $((r % 2)) = 1 ]; then order="off fanotify bpf-lsm"; else order="bpf-lsm fanotify off"; fi
  for v in $order; do variant $v $r; done
  r=$((r + 1))
done
echo "bench: done"
