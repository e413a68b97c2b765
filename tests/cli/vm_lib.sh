# What the tests that boot Debian's own kernel under QEMU share (sourced after lib.sh):
# vm_kernel downloads the kernel package once into the build tree and sets $VM_KERNEL (and
# $VM_CONFIG, its build configuration); vm_initramfs ROOT OUT packs a directory; vm_copy_prog
# ROOT PROG copies a dynamically linked program and the libraries it needs into ROOT;
# vm_agent_stack ROOT puts ctrustd, the CLI, swtpm and runc with everything they load into
# ROOT, for a guest that runs the agent itself.

vm_kernel() {
  local cache=${CTRUST_VM_CACHE:-$CTRUST_TESTS/../build/vm-cache}
  mkdir -p "$cache"
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { echo "vm: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2; return 1; }
  VM_KERNEL=$(ls "$cache/$pkg/boot/vmlinuz-"* 2>/dev/null | head -1 || true)
  if [ -z "$VM_KERNEL" ]; then
    # The mirror drops superseded kernels: refresh the lists once if the download fails.
    (cd "$cache" && { apt-get download -q "$pkg" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get download -q "$pkg" >/dev/null 2>&1; }; }) ||
      { echo "vm: cannot download $pkg" >&2; return 1; }
    dpkg-deb -x "$cache/$pkg"_*.deb "$cache/$pkg"
    rm -f "$cache/$pkg"_*.deb
    VM_KERNEL=$(ls "$cache/$pkg/boot/vmlinuz-"* | head -1)
  fi
  VM_CONFIG=$(ls "$cache/$pkg/boot/config-"* | head -1)
}

vm_initramfs() {  # ROOT OUT
  (cd "$1" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$2")
}

vm_copy_prog() {  # ROOT PROG: PROG at ROOT/PROG's basename, its libraries at their paths
  cp "$2" "$1/$(basename "$2")"
  vm_copy_libs "$1" "$2"
}

vm_copy_libs() {  # ROOT FILE...: the libraries the FILEs need, at their paths under ROOT
  local root=$1 lib
  shift
  for lib in $(ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | sort -u); do
    [ -e "$root/$lib" ] && continue
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done
}

vm_agent_stack() {  # ROOT: the agent's programs and the tools it runs, at /usr/bin in ROOT
  local root=$1 p progs=()
  mkdir -p "$root/usr/bin" "$root/usr/lib/x86_64-linux-gnu"
  for p in "$(readlink -f "$CTRUSTD")" "$(readlink -f "$CTRUST")" "$(readlink -f "$CTRUST_HOOK")"; do
    # Without their debug information: the initramfs is unpacked into the guest's memory.
    strip --strip-debug -o "$root/usr/bin/$(basename "$p")" "$p"
    progs+=("$p")
  done
  for p in swtpm swtpm_setup swtpm_localca swtpm_cert swtpm_ioctl certtool runc jq; do
    p=$(command -v "$p") || { echo "vm: missing $p" >&2; return 1; }
    cp "$p" "$root/usr/bin/"
    progs+=("$p")
  done
  # tpm2-tss loads its TCTIs with dlopen: ldd does not list them.
  for p in /usr/lib/x86_64-linux-gnu/libtss2-tcti-{swtpm,device,mssim,cmd}.so.0; do
    cp -L "$p" "$root$p"
    progs+=("$p")
  done
  vm_copy_libs "$root" "${progs[@]}"
}

vm_guest_base() {  # ROOT: busybox and the directories every guest needs, overlayfs's module
  local root=$1
  mkdir -p "$root"/{bin,proc,sys,dev,tmp,run,etc}
  cp "$(command -v busybox)" "$root/bin/busybox"
  cp "$(ls "$(dirname "$VM_KERNEL")"/../lib/modules/*/kernel/fs/overlayfs/overlay.ko | head -1)" "$root/overlay.ko"
  echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
}

vm_init() {  # ROOT COMMAND: ROOT/init, which moves the initramfs to a tmpfs (runc's pivot_root
  # cannot leave the initramfs), mounts what a host has and runs COMMAND between ===RUN=== and
  # ===END=== on the serial console, then powers off.
  cat >"$1/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
if [ ! -e /.moved ]; then
  mkdir /newroot
  mount -t tmpfs -o size=90% tmpfs /newroot
  for d in /* /.[!.]*; do
    case \$d in /newroot | /proc | /sys | /dev | "/.[!.]*") ;; *) cp -a \$d /newroot/ ;; esac
  done
  mkdir -p /newroot/proc /newroot/sys /newroot/dev
  touch /newroot/.moved
  exec switch_root /newroot /init
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
insmod /overlay.ko
echo
echo ===LSM===
cat /sys/kernel/security/lsm
echo
echo ===RUN===
$2
echo ===END===
poweroff -f
INIT
  chmod +x "$1/init"
}

vm_boot() {  # INITRD MEMORY_MB TIMEOUT_S: boots the guest, its console in $WORK/serial.out
  local rc=0
  timeout "$3" qemu-system-x86_64 -machine q35,accel="$VM_ACCEL" -smp "${VM_SMP:-2}" -m "$2" \
    -nographic -no-reboot -kernel "$VM_KERNEL" -initrd "$1" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init $VM_APPEND" >"$WORK/serial.raw" 2>&1 || rc=$?
  tr -d '\r' <"$WORK/serial.raw" >"$WORK/serial.out"
  if [ "$rc" != 0 ]; then
    # What the guest printed last says where it stopped (124: the timeout ended it).
    echo "qemu exited $rc; the guest's console ended with:" >&2
    tail -40 "$WORK/serial.out" >&2
  fi
  if grep -q 'Kernel panic' "$WORK/serial.out"; then
    # A guest kernel that locked up panicked and replayed its whole log (VM_APPEND): the first
    # report and its stacks say where each CPU was.
    echo "the guest's kernel panicked; its first report of a lockup or bug:" >&2
    grep -n -m1 -E 'soft lockup|hard LOCKUP|BUG:|rcu_preempt detected stalls|hung_task' "$WORK/serial.out" |
      cut -d: -f1 | { read -r n && sed -n "$n,$((n + 150))p" "$WORK/serial.out" >&2; } || true
    rc=125
  fi
  return "$rc"
}

section() {  # NAME: what the guest printed between ===NAME=== and the next ===
  sed -n "/^===$1===\$/,/^===/p" "$WORK/serial.out" | sed '1d;$d'
}

# TCG by default: a /dev/kvm may be there and still not run an ordinary guest (this machine
# kind has one from kvm-pvm, which only runs PVM guests: a Debian kernel hangs there).
# CTRUST_VM_ACCEL=kvm uses KVM where it really works.
VM_ACCEL=${CTRUST_VM_ACCEL:-tcg}
# A guest CPU that stays in the kernel for 60 s (soft lockup) is a hang, not slowness: the
# guest panics at once, instead of at the test's timeout minutes later, and prints its whole
# kernel log with every CPU's stack (console_verbose at panic), which vm_boot shows.
VM_APPEND="softlockup_panic=1 watchdog_thresh=30 softlockup_all_cpu_backtrace=1 panic_print=0x20 ${VM_APPEND:-}"
