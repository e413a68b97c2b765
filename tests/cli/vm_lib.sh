# What the tests that boot Debian's own kernel under QEMU share (sourced after lib.sh):
# vm_kernel downloads the kernel package once into the build tree and sets $VM_KERNEL (and
# $VM_CONFIG, its build configuration); vm_initramfs ROOT OUT packs a directory; vm_copy_prog
# ROOT PROG copies a dynamically linked program and the libraries it needs into ROOT.

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
  local root=$1 prog=$2 lib
  cp "$prog" "$root/$(basename "$prog")"
  for lib in $(ldd "$prog" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done
}

# TCG by default: a /dev/kvm may be there and still not run an ordinary guest (this machine
# kind has one from kvm-pvm, which only runs PVM guests: a Debian kernel hangs there).
# CTRUST_VM_ACCEL=kvm uses KVM where it really works.
VM_ACCEL=${CTRUST_VM_ACCEL:-tcg}
