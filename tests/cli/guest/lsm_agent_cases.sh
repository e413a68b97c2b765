# Run by busybox sh inside the QEMU guest of tests/cli/lsm_agent_test.sh (Debian's kernel, BPF
# LSM on), once per backend: `sh cases.sh BACKEND` runs ctrustd with enforcement.backend =
# BACKEND ($W/ctrustd-BACKEND.toml) and real runc containers, attacked as
# tests/cli/exec_path_test.sh attacks them on the host, then stops them all. Prints
# "ok NAME" or "not ok NAME: why" per check, and "entry BACKEND CONTAINER NAME VIOLATION" per
# log entry, which the host compares between the backends. /img is the image, /work the
# agent's.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
export TSS2_LOG=all+none
B=${1:?usage: cases.sh BACKEND}
W=/work
SOCK=$W/ctrustd.sock
ok() { echo "ok $B: $1"; }
nok() { echo "not ok $B: $1: $2"; }
is() {  # NAME GOT WANT
  if [ "$2" = "$3" ]; then ok "$1"; else nok "$1" "got [$2], want [$3]"; fi
}
# Fd 3 is the console even inside $(...): what T and diag print is never captured.
exec 3>&1
rm -f $W/hung
diag() {  # what the guest is doing: its processes, the agent's threads and last log lines
  {
    echo "--- processes"
    ps
    for t in /proc/$AGENT/task/*; do
      echo "--- agent thread ${t##*/} $(cat $t/comm) wchan $(cat $t/wchan)"
      cat $t/stack
    done
    for p in /proc/[0-9]*; do
      [ "$(awk '{print $3}' $p/stat 2>/dev/null)" = D ] && echo "--- D state: $(tr '\0' ' ' <$p/cmdline)" && cat $p/stack
    done
    echo "--- ctrustd.log"
    grep -v ': debug: ' $W/ctrustd.log | tail -30
  } 2>&1 | sed "s/^/diag $B: /" >&3
}
# T CMD...: CMD, ended if it takes over 60 s. The first command that does is reported with
# diag, and every later one fails at once, so that a hang costs one minute, not the guest's
# whole timeout, and the console says where it was.
T() {
  [ -e $W/hung ] && return 125
  _t0=$(date +%s)
  _trc=0
  timeout -k 5 60 "$@" || _trc=$?
  if [ $_trc -ne 0 ] && [ $(($(date +%s) - _t0)) -ge 60 ]; then
    touch $W/hung
    echo "not ok $B: timed out after 60 s: $*" >&3
    diag
  fi
  return $_trc
}
info() { T ctrust ps --socket "$SOCK" --json | jq -r --arg id "$1" ".containers[] | select(.id == \$id) | $2"; }
log_names() { T ctrust log show --socket "$SOCK" --container "$1" --json | jq -r '.[].name'; }

rm -rf $W/state $W/bundles
ctrustd --config $W/ctrustd-$B.toml >$W/ctrustd.log 2>&1 &
AGENT=$!
i=0
while [ $i -lt 600 ]; do
  timeout 5 ctrust ps --socket "$SOCK" >/dev/null 2>&1 && break
  kill -0 $AGENT 2>/dev/null || break
  sleep 0.1
  i=$((i + 1))
done
if ! timeout 5 ctrust ps --socket "$SOCK" >/dev/null 2>&1; then
  nok "ctrustd starts" "$(tail -5 $W/ctrustd.log)"
  exit 0
fi
ok "ctrustd starts"
is "ctrust ps: the backend" "$(T ctrust ps --socket "$SOCK" --json | jq -r .backend)" $B
grep -q "$B" $W/ctrustd.log && ok "the log names the backend" || nok "the log names the backend" "$(head -5 $W/ctrustd.log)"
for m in enforce measure; do
  T ctrust policy load --socket "$SOCK" $W/xp-$m.json >/dev/null 2>$W/load.err &&
    ok "policy load xp-$m" || nok "policy load xp-$m" "$(cat $W/load.err)"
done

# --- two runc containers over overlays of /img, root with CAP_SYS_ADMIN ---------------------
start() {  # ID POLICY
  b=$W/bundles/$1
  mkdir -p $b/rootfs $b/upper $b/work
  mount -t overlay overlay -o lowerdir=/img,upperdir=$b/upper,workdir=$b/work $b/rootfs
  (cd $b && runc spec)
  jq --arg s "$SOCK" --arg p "$2" '
    .process.terminal = false |
    .process.args = ["/bin/sleep", "3600"] |
    .process.capabilities |= with_entries(.value += ["CAP_SYS_ADMIN"]) |
    .root = {"path": "rootfs", "readonly": false} |
    .annotations = {"io.ctrust.policy": $p} |
    .linux.namespaces |= map(select(.type != "network")) |
    .hooks = {"createRuntime": [{"path": "/usr/bin/ctrust", "args": ["ctrust", "hook", "createRuntime", "--socket", $s]}],
              "poststop": [{"path": "/usr/bin/ctrust", "args": ["ctrust", "hook", "poststop", "--socket", $s]}]}
  ' $b/config.json >$b/config.new && mv $b/config.new $b/config.json
  (cd $b && T runc run -d "$1" </dev/null >$W/$1.out 2>$W/$1.err)
}
for c in enf:xp-enforce mea:xp-measure; do
  id=xp-${c%%:*}
  if start $id ${c#*:}; then ok "$id starts"; else nok "$id starts" "$(cat $W/$id.err)"; fi
  is "$id: under the exec gate" "$(info $id .gate.on)" true
  is "$id: gated by $B" "$(info $id .gate.backend)" $B
done

in_c() {  # ID COMMAND: its exit code
  rc=0
  T runc exec "$1" /bin/sh -c "$2" </dev/null >$W/in.out 2>$W/in.err || rc=$?
  echo $rc
}
ran() { if T runc exec "$1" /bin/sh -c "test -e $2" </dev/null >/dev/null 2>&1; then echo yes; else echo no; fi; }
# attack NAME SETUP ATTACK MARK LOGGED: in xp-enf ATTACK fails without running (MARK never
# written); with bpf-lsm it is refused, not killed (no exit 137: the kernel said no before
# it ran), while the fanotify backend's gate may kill it before its first instruction. In
# xp-mea it runs and the log gains an entry whose name matches the regex LOGGED.
attack() {
  rc=$(in_c xp-enf "$2")
  [ "$rc" = 0 ] || nok "xp-enf: $1: setup" "exit $rc: $(head -c 300 $W/in.err)"
  rc=$(in_c xp-enf "$3")
  sleep 0.5
  r=$(ran xp-enf $4)
  if { [ "$rc" != 137 ] || [ $B = fanotify ]; } && [ "$r" = no ]; then ok "xp-enf: $1: refused"; else
    nok "xp-enf: $1: refused" "exit $rc, ran $r: $(head -c 300 $W/in.err)"
  fi
  rc=$(in_c xp-mea "$2")
  [ "$rc" = 0 ] || nok "xp-mea: $1: setup" "exit $rc: $(head -c 300 $W/in.err)"
  before=$(log_names xp-mea | wc -l)
  in_c xp-mea "$3" >/dev/null
  sleep 0.5
  is "xp-mea: $1: it ran" "$(ran xp-mea $4)" yes
  n=0
  while [ $n -lt 40 ]; do
    log_names xp-mea | tail -n +$((before + 1)) | grep -Eq "$5" && break
    sleep 0.2
    n=$((n + 1))
  done
  if log_names xp-mea | tail -n +$((before + 1)) | grep -Eq "$5"; then ok "xp-mea: $1: logged"; else
    nok "xp-mea: $1: logged" "no new entry matches /$5/: $(log_names xp-mea | tail -n +$((before + 1)) | tr '\n' ' ')"
  fi
}

# --- controls ----------------------------------------------------------------------------------
is "xp-enf: a listed program runs" "$(in_c xp-enf /bin/dyntrue)" 0
is "xp-enf: a listed program runs in a new mount namespace" "$(in_c xp-enf 'unshare -m /bin/dyntrue')" 0
is "xp-enf: a listed library loads (ld.so maps libc)" "$(in_c xp-enf '/usr/local/bin/dynsleep 0 /tmp/lived')" 0
# An unlisted program outside every container is not the agent's business.
mkdir -p /tmp/outside && cp /bin/busybox /tmp/outside/busybox && printf x >>/tmp/outside/busybox
is "an unlisted program outside the containers runs" "$(T /tmp/outside/busybox true; echo $?)" 0

# --- the attacks -------------------------------------------------------------------------------
DECODE='base64 -d /opt/payload.b64 > /tmp/p && chmod +x /tmp/p'
is "xp-enf: an unlisted exec fails with EPERM (sh: 126)" "$(in_c xp-enf "$DECODE && /tmp/p mark /tmp/m0")" 126
is "... and did not run" "$(ran xp-enf /tmp/m0)" no
attack "unshare -m of an unlisted program" "$DECODE" "unshare -m /tmp/p mark /tmp/m1" /tmp/m1 '/tmp/p'
attack "unshare -Um of an unlisted program (a user namespace)" "base64 -d /opt/payload.b64 > /tmp/pu && chmod +x /tmp/pu" \
  "unshare -Um /tmp/pu mark /tmp/m1u" /tmp/m1u '/tmp/pu'
# The preloading programs live on for a second (dynsleep), as the mprotect helper does: a
# process that exits before the agent reads the report cannot be measured by either
# backend (docs/EXEC_PATH.md, "Known"), and the comparison needs both to measure it.
attack "LD_PRELOAD of a memfd" true \
  "CTRUST_MARK=/tmp/m2 ctrust-test-helper memfdpreload /opt/evil.so.x /usr/local/bin/dynsleep 1 /tmp/m2l" /tmp/m2 'memfd'
MNT='mkdir -p /mnt/t && (grep -q " /mnt/t " /proc/mounts || mount -t tmpfs none /mnt/t)'
attack "LD_PRELOAD from a tmpfs mounted inside" "$MNT && base64 -d /opt/evil.so.b64 > /mnt/t/evil.so" \
  "CTRUST_MARK=/tmp/m3 LD_PRELOAD=/mnt/t/evil.so /usr/local/bin/dynsleep 1 /tmp/m3l" /tmp/m3 'evil\.so'
attack "exec from a tmpfs mounted inside" "$MNT && base64 -d /opt/payload.b64 > /mnt/t/p && chmod +x /mnt/t/p" \
  "/mnt/t/p mark /tmp/m3x" /tmp/m3x '/mnt/t/p'
attack "fexecve of a memfd that forks" true \
  "ctrust-test-helper memfdexecx /opt/payload.x payload fork /tmp/m4" /tmp/m4 'memfd|^/dev/fd/'
attack "mprotect(PROT_EXEC) of an unlisted file on a tmpfs" "$MNT && base64 -d /opt/payload.b64 > /mnt/t/q" \
  "ctrust-test-helper mprotectexec /mnt/t/q && touch /tmp/m5" /tmp/m5 '(^|/)q( \(deleted\))?$'
# A listed program's copy runs (its digest is listed); written afterwards, it is asked again.
is "xp-enf: a copy of a listed program runs" "$(in_c xp-enf 'cp /bin/dyntrue /tmp/d && /tmp/d')" 0
is "xp-enf: ... written to, it is judged again and refused" "$(in_c xp-enf 'printf x >> /tmp/d && /tmp/d')" 126

# 6. A listed library patched in place while a listed process maps it (copy-up first, by
# touch, which opens nothing). Before Linux 6.7 /proc/PID/maps names the mapping by the
# upper file's own inode, not the overlay file's: the agent finds the mapper through its
# map_files link. In enforce the mapper is killed before the write; in measure it runs on;
# both write a violation record.
LIBC=/lib/x86_64-linux-gnu/libc.so.6
PATCH="dd if=/dev/zero of=$LIBC bs=1 count=4 seek=200000 conv=notrunc 2>/dev/null"
for id in xp-enf xp-mea; do
  is "$id: the patch was written" "$(in_c $id "touch $LIBC && (dynsleep 2 /tmp/lived6 &) && sleep 0.5 && $PATCH && sleep 2.5")" 0
  records=$(T ctrust log show --socket "$SOCK" --container $id --json | jq --arg n $LIBC '[.[] | select(.name == $n and .violation)] | length')
  [ "${records:-0}" -ge 1 ] && ok "$id: a listed library patched after copy-up while mapped: a violation record" ||
    nok "$id: a listed library patched after copy-up while mapped: a violation record" "records: $records"
  if [ $id = xp-enf ]; then want=no; else want=yes; fi
  is "$id: the process that mapped it lived on: $want" "$(ran $id /tmp/lived6)" $want
done

# --- the books ---------------------------------------------------------------------------------
names=$(log_names xp-enf | tr '\n' ' ')
case "$names" in *"/tmp/p"*) ok "xp-enf: the refusals are in its log" ;; *) nok "xp-enf: the refusals are in its log" "$names" ;; esac
v=$(info xp-enf .counts.violations)
[ "${v:-0}" -ge 5 ] && ok "ctrust ps counts the refusals ($v)" || nok "ctrust ps counts the refusals" "$v"
pcr_file() {  # HEX: PCR-00 .. PCR-23 (evmctl reads them by position), zero but PCR 10
  zero=$(echo "$1" | tr '0-9a-f' '0')
  n=0
  while [ $n -lt 24 ]; do
    if [ $n -eq 10 ]; then printf 'PCR-%02d: %s\n' $n "$1"; else printf 'PCR-%02d: %s\n' $n "$zero"; fi
    n=$((n + 1))
  done
}
for id in xp-enf xp-mea; do
  tcti=$(info $id .vtpm.tcti)
  file=$(info $id .log)
  for bank in sha1 sha256; do
    val=$(T ctrust tpm pcrread --tcti "$tcti" $bank:10 --json | jq -r ".$bank[\"10\"]")
    pcr_file "$val" >$W/$id.$bank.pcrs
  done
  if T ctrust log verify --pcrs $W/$id.sha1.pcrs --pcrs $W/$id.sha256.pcrs "$file" >$W/verify.out 2>&1; then
    ok "$id: its log replays to its vTPM"
  else
    nok "$id: its log replays to its vTPM" "$(tail -3 $W/verify.out)"
  fi
  if T evmctl ima_measurement --ignore-violations --pcrs "sha256,$W/$id.sha256.pcrs" "$file" -v 2>&1 | grep -q "Matched per TPM bank"; then
    ok "$id: evmctl matches it"
  else
    nok "$id: evmctl matches it" "$(evmctl ima_measurement --ignore-violations --pcrs "sha256,$W/$id.sha256.pcrs" "$file" 2>&1 | tail -2)"
  fi
done
# The entries, for the host's comparison of the backends: the name and whether it is a
# violation, in the order of the log.
for id in xp-enf xp-mea; do
  T ctrust log show --socket "$SOCK" --container $id --json |
    jq -r --arg b $B --arg id $id '.[] | "entry \($b) \($id) \(.name) \(.violation)"'
done
rm -f $W/hung  # the clean-up runs even after a hang
for id in xp-enf xp-mea; do T runc kill $id KILL 2>/dev/null; done
sleep 1
for id in xp-enf xp-mea; do T runc delete -f $id 2>/dev/null; done
grep -E '^ctrustd: (error|critical):' $W/ctrustd.log | head -5 | sed "s/^/agent: $B: /"
if [ -n "${VM_DEBUG:-}" ]; then
  echo "--- ctrustd.log ($B)"; grep -v ': debug: ' $W/ctrustd.log | tail -40
  runc list
  for f in $(find $W/state -name setup.log | head -2); do echo "--- $f"; tail -20 $f; done
fi
# The agent stops on SIGTERM (a zombie until waited for: that counts as stopped).
kill $AGENT
n=0
while [ $n -lt 100 ] && [ "$(awk '{print $3}' /proc/$AGENT/stat 2>/dev/null)" != Z ] && [ -e /proc/$AGENT ]; do
  sleep 0.2
  n=$((n + 1))
done
if [ $n -lt 100 ]; then ok "ctrustd stops on SIGTERM"; else
  nok "ctrustd stops on SIGTERM" "running 20 s after it"
  diag
  kill -9 $AGENT
fi
wait $AGENT 2>/dev/null
for b in $W/bundles/*; do umount $b/rootfs 2>/dev/null; done
echo "lsm-agent: $B: done"
