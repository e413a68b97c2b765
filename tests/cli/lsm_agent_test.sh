#!/usr/bin/env bash
# The agent itself with enforcement.backend = "bpf-lsm" (issue 16, docs/EXEC_PATH.md), on a
# kernel that runs BPF LSM programs: Debian's own kernel under QEMU, as in lsm_test.sh, but
# the guest runs ctrustd with its embedded host TPM and swtpm vTPMs, and real runc containers
# whose hooks hand them to it. Inside, tests/cli/guest/lsm_agent_cases.sh attacks them as
# exec_path_test.sh does on the host: unlisted execs (in the container's namespace and in a
# new one), LD_PRELOAD of a memfd and of a library on a tmpfs mounted inside, a program there,
# fexecve of a memfd that forks, mprotect(PROT_EXEC) of an unlisted file, a listed file
# written afterwards, a listed library patched after copy-up while mapped. In enforce each
# fails before it runs (with bpf-lsm: EPERM, nothing is killed); in measure each runs and is
# logged; both logs replay to their vTPMs (ctrust and evmctl). The guest runs the cases
# twice, with backend = "bpf-lsm" and then "fanotify", and the two runs must write the same
# log entries (names and violation flags, in order) for the same events. VM_DEBUG=1 prints
# the agent's log; VM_LOG_LEVEL changes the guest agent's log level.
source "$(dirname "$0")/lib.sh"

: "${CTRUSTD:?set CTRUSTD to the ctrustd binary}"
: "${CTRUST_HOOK:?set CTRUST_HOOK to the ctrust-hook binary}"
missing=()
for t in qemu-system-x86_64 busybox cpio ldd gcc jq runc swtpm swtpm_setup evmctl; do
  command -v "$t" >/dev/null || missing+=("$t")
done
if ((${#missing[@]})); then
  echo "lsm agent test: missing ${missing[*]} (scripts/setup installs them)" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
source "$(dirname "$0")/vm_lib.sh"
vm_kernel || exit 1
BB=$(command -v busybox)

# --- the image (as exec_path_test.sh builds it) --------------------------------------------------
IMG=$WORK/root/img
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,opt,mnt,usr/local/bin,lib64,lib/x86_64-linux-gnu}
chmod 1777 "$IMG/tmp"
cp "$BB" "$IMG/bin/busybox"
for a in sh true cat ls mkdir mount base64 chmod unshare sleep rm touch grep test cp printf dd; do
  ln -s busybox "$IMG/bin/$a"
done
gcc -static -O2 -o "$IMG/usr/local/bin/ctrust-test-helper" \
  "$CTRUST_TESTS/cli/helpers/ctrust-test-helper.c" -lpthread
cp /bin/true "$IMG/bin/dyntrue"
gcc -O2 -o "$IMG/usr/local/bin/dynsleep" "$CTRUST_TESTS/cli/helpers/dynsleep.c"
cp /lib64/ld-linux-x86-64.so.2 "$IMG/lib64/"
cp /lib/x86_64-linux-gnu/libc.so.6 "$IMG/lib/x86_64-linux-gnu/"
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"

GW=$WORK/root/work  # the guest's /work
mkdir -p "$GW"
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$GW/key.pub" >/dev/null
for mode in enforce measure; do
  "$CTRUST" policy create --from "$IMG" --name "xp-$mode" --issuer tests --mode "$mode" \
    --any-image --out "$GW/xp-$mode.json" >/dev/null
  jq 'del(.allow[].paths)' "$GW/xp-$mode.json" >"$WORK/p.json" && mv "$WORK/p.json" "$GW/xp-$mode.json"
  "$CTRUST" policy sign --key "$WORK/key.pem" "$GW/xp-$mode.json" >/dev/null
done
# The payloads, added after the policies were made, encoded so that they are not ELF files.
gcc -static -O2 -o "$WORK/payload" "$CTRUST_TESTS/cli/helpers/payload.c"
gcc -shared -fPIC -O2 -o "$WORK/evil.so" "$CTRUST_TESTS/cli/helpers/evil_preload.c"
base64 "$WORK/payload" >"$IMG/opt/payload.b64"
base64 "$WORK/evil.so" >"$IMG/opt/evil.so.b64"
"$IMG/usr/local/bin/ctrust-test-helper" xor "$WORK/payload" "$IMG/opt/payload.x"
"$IMG/usr/local/bin/ctrust-test-helper" xor "$WORK/evil.so" "$IMG/opt/evil.so.x"

for backend in bpf-lsm fanotify; do
  cat >"$GW/ctrustd-$backend.toml" <<EOF
state_dir = "/work/state"
socket = "/work/ctrustd.sock"
log_level = "${VM_LOG_LEVEL:-info}"
[vtpm]
pool = 1
[policies]
trust = ["/work/key.pub"]
[enforcement]
backend = "$backend"
EOF
done

# --- the guest: busybox, the agent's stack, overlayfs, the cases -----------------------------------
root=$WORK/root
vm_guest_base "$root"
vm_agent_stack "$root" || exit 1
cp "$(command -v evmctl)" "$root/usr/bin/" && vm_copy_libs "$root" "$(command -v evmctl)"
cp "$CTRUST_TESTS/cli/guest/lsm_agent_cases.sh" "$root/cases.sh"
vm_init "$root" "export VM_DEBUG=${VM_DEBUG:-}; sh /cases.sh bpf-lsm; sh /cases.sh fanotify"
vm_initramfs "$root" "$WORK/initrd.gz"

# Under ctest's 600 s, so that a guest that hangs is reported with its console.
# vm_boot prints the end of the console to stderr if the guest fails or hangs.
if vm_boot "$WORK/initrd.gz" 2048 480; then pass; else fail "boot the guest (exit $?)"; fi
section RUN >"$WORK/run.out"
while IFS= read -r line; do
  case "$line" in
    "ok "*) pass ;;
    "not ok "*) fail "guest: ${line#not ok }" ;;
  esac
done <"$WORK/run.out"
for backend in bpf-lsm fanotify; do
  check_eq "every case ran in the guest ($backend)" "$(grep -c "^lsm-agent: $backend: done" "$WORK/run.out")" 1
  grep "^entry $backend " "$WORK/run.out" | cut -d' ' -f3- >"$WORK/entries.$backend"
done
if grep -q '^agent: ' "$WORK/run.out"; then fail "the agent logged errors: $(grep '^agent: ' "$WORK/run.out" | head -3)"; fi
n=$(grep -c '^ok ' "$WORK/run.out")
[ "$n" -ge 100 ] && pass || fail "only $n checks passed in the guest: $(tail -5 "$WORK/serial.out")"
# The same events, the same log entries, whichever backend saw them.
[ "$(wc -l <"$WORK/entries.bpf-lsm")" -ge 20 ] && pass || fail "too few log entries: $(cat "$WORK/entries.bpf-lsm")"
if diff "$WORK/entries.bpf-lsm" "$WORK/entries.fanotify" >"$WORK/entries.diff"; then pass; else
  fail "the backends logged different entries (< bpf-lsm, > fanotify): $(head -20 "$WORK/entries.diff" | tr "\n" " ")"
fi
finish
