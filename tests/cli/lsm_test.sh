#!/usr/bin/env bash
# The BPF-LSM gate (enforcement.backend "bpf-lsm", docs/EXEC_PATH.md) on a kernel that runs
# BPF LSM programs. This machine's kernel refuses lsm/* programs, so the test boots Debian's
# own kernel (CONFIG_BPF_LSM, "bpf" among its default LSMs) under QEMU with an initramfs
# holding busybox and lsm_gate_vm (tests/events/lsm_gate_vm.cpp): the agent's BPF object is
# loaded with its LSM programs, a cgroup is gated, and the kernel must refuse with EPERM an
# unlisted exec, mmap(PROT_EXEC), mprotect(PROT_EXEC), a memfd exec and a vouched file
# written afterwards, while the listed program runs; in measure they run and are reported.
source "$(dirname "$0")/lib.sh"

: "${LSM_GATE_VM:?set LSM_GATE_VM to the lsm_gate_vm test program}"
missing=()
for t in qemu-system-x86_64 busybox cpio ldd; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  echo "lsm test: missing ${missing[*]} (scripts/setup installs them)" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
source "$(dirname "$0")/vm_lib.sh"
vm_kernel || exit 1
check_eq "the guest kernel has CONFIG_BPF_LSM" "$(grep -c '^CONFIG_BPF_LSM=y' "$VM_CONFIG")" 1

root=$WORK/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp}
cp "$(command -v busybox)" "$root/bin/busybox"
# Two static programs that exit 0 as "true": the policy "lists" the first one only.
cp "$(command -v busybox)" "$root/bin/listed"
cp "$(command -v busybox)" "$root/bin/unlisted"
printf 'x' >>"$root/bin/unlisted"
vm_copy_prog "$root" "$(readlink -f "$LSM_GATE_VM")"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo
echo ===LSM===
cat /sys/kernel/security/lsm 2>/dev/null || { mount -t securityfs securityfs /sys/kernel/security && cat /sys/kernel/security/lsm; }
echo
echo ===RUN===
/lsm_gate_vm /bin/listed /bin/unlisted
echo ===END===
poweroff -f
INIT
chmod +x "$root/init"
vm_initramfs "$root" "$WORK/initrd.gz"

# vm_boot prints the end of the console to stderr if the guest fails or hangs.
if vm_boot "$WORK/initrd.gz" 768 300; then pass; else fail "boot the guest (exit $?)"; fi
lsms=$(section LSM | grep -m1 , || true)
check_eq "the guest runs the bpf LSM" "$(tr ',' '\n' <<<"$lsms" | grep -cx bpf)" 1
section RUN >"$WORK/run.out"
while IFS= read -r line; do
  case "$line" in
    "ok "*) pass ;;
    "not ok "*) fail "guest: ${line#not ok }" ;;
  esac
done <"$WORK/run.out"
check_eq "every check ran in the guest" "$(grep -c '^lsm-gate: ' "$WORK/run.out")" 1
[ "$(grep -c '^ok ' "$WORK/run.out")" -ge 15 ] && pass || fail "only $(grep -c '^ok ' "$WORK/run.out") checks passed in the guest: $(tail -5 "$WORK/serial.out")"
finish
