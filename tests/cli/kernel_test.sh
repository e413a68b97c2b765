#!/usr/bin/env bash
# A real kernel's IMA log against a real TPM: boots Debian's own kernel (IMA built in)
# under QEMU with swtpm as its TPM, lets IMA measure a few files, and checks that ctrust
# verifies the kernel's binary and ASCII measurement lists against the TPM's PCR values,
# prints the ASCII form byte for byte as the kernel does, and that evmctl agrees. This
# machine's own kernel has neither IMA nor a TPM, hence the VM.
source "$(dirname "$0")/lib.sh"

need_root_tools() {
  local missing=()
  for t in qemu-system-x86_64 swtpm busybox cpio evmctl; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  if ((${#missing[@]})); then
    echo "kernel test: missing ${missing[*]} (scripts/setup installs them)" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
  fi
}
need_root_tools

source "$(dirname "$0")/vm_lib.sh"
vm_kernel || exit 1
kernel=$VM_KERNEL
grep -q '^CONFIG_IMA=y' "$VM_CONFIG" || { echo "kernel test: $kernel has no IMA" >&2; exit 1; }

# ---- the guest: busybox in an initramfs; IMA measures what runs and what root reads ----
cd "$WORK"
mkdir -p root/bin root/proc root/sys root/dev root/data
cp "$(command -v busybox)" root/bin/busybox
head -c 5000 /dev/urandom >root/data/random1
head -c 70000 /dev/urandom >root/data/random2
echo "a name with spaces" >"root/data/a file with spaces"
cat >root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
# The kernel's own policies skip tmpfs, where an initramfs lives; measure it, but not the
# pseudo-filesystems read below (sysfs, securityfs, proc, devpts), so that reading the
# log and the PCRs adds no entries after the snapshot.
printf 'dont_measure fsmagic=0x62656572\ndont_measure fsmagic=0x73636673\ndont_measure fsmagic=0x9fa0\ndont_measure fsmagic=0x1cd1\nmeasure func=BPRM_CHECK\nmeasure func=FILE_MMAP mask=MAY_EXEC\nmeasure func=FILE_CHECK mask=MAY_READ uid=0\n' >/sys/kernel/security/ima/policy
for f in /data/*; do cat "$f" >/dev/null; done
echo ===BIN===
base64 /sys/kernel/security/ima/binary_runtime_measurements
echo ===ASCII===
base64 /sys/kernel/security/ima/ascii_runtime_measurements
for bank in sha1 sha256; do
  echo "===PCRS-$bank==="
  i=0
  while [ $i -lt 24 ]; do
    printf 'PCR-%02d: %s\n' $i "$(cat /sys/class/tpm/tpm0/pcr-$bank/$i)"
    i=$((i + 1))
  done
done
echo ===END===
poweroff -f
INIT
chmod +x root/init
vm_initramfs root "$WORK/initrd.gz"

mkdir tpm
swtpm socket --tpm2 --tpmstate dir="$WORK/tpm" --ctrl type=unixio,path="$WORK/swtpm.sock" \
  --flags startup-clear --pid file="$WORK/swtpm.pid" --daemon
trap 'kill "$(cat "$WORK/swtpm.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do [ -S "$WORK/swtpm.sock" ] && break; sleep 0.1; done

accel=$VM_ACCEL
check "boot the guest" timeout 240 qemu-system-x86_64 -machine q35,accel=$accel -m 512 \
  -nographic -no-reboot -kernel "$kernel" -initrd initrd.gz \
  -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
  -chardev socket,id=chrtpm,path="$WORK/swtpm.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm \
  -device tpm-tis,tpmdev=tpm0
tr -d '\r' <"$WORK/.out" >serial.out
section() { sed -n "/^===$1===\$/,/^===/p" serial.out | sed '1d;$d'; }
section BIN | base64 -d >kernel.bin
section ASCII | base64 -d >kernel.txt
section PCRS-sha1 >pcrs.sha1
section PCRS-sha256 >pcrs.sha256
check_eq "24 sha256 PCRs read" "$(grep -c '^PCR-' pcrs.sha256)" "24"
check_eq "the log has entries" "$([ "$(wc -l <kernel.txt)" -ge 5 ] && echo yes)" "yes"

# ---- ctrust against the kernel and the TPM ----
check "verify kernel binary log" "$CTRUST" log verify --pcrs sha1,pcrs.sha1 --pcrs sha256,pcrs.sha256 kernel.bin
check "verify kernel ASCII log" "$CTRUST" log verify --pcrs pcrs.sha1 --pcrs pcrs.sha256 kernel.txt
check "show equals the kernel's ASCII" cmp <("$CTRUST" log show kernel.bin) kernel.txt
check "ASCII to binary equals the kernel's binary" cmp <("$CTRUST" log convert --to binary kernel.txt -) kernel.bin
check_eq "spaces stored as _" "$(grep -c '/data/a_file_with_spaces' kernel.txt)" "1"
check "evmctl agrees" evmctl ima_measurement --pcrs sha1,pcrs.sha1 --pcrs sha256,pcrs.sha256 kernel.bin
# boot_aggregate (FORMATS.md): SHA-256 over PCRs 0-9 of the sha256 bank.
want=$(python3 -c "
import hashlib, sys
pcrs = dict(l.split(': ') for l in open('pcrs.sha256').read().split('\n') if l)
print(hashlib.sha256(b''.join(bytes.fromhex(pcrs['PCR-%02d' % i]) for i in range(10))).hexdigest())")
check_eq "boot_aggregate is SHA-256 of PCRs 0-9" \
  "$(awk '$5 == "boot_aggregate" {print $4}' kernel.txt)" "sha256:$want"

# ---- and a tampered kernel log fails ----
# One bit of boot_aggregate's file digest (record 1: 4 + 20 + 4 + 7 + 4 header bytes, then
# the d-ng length and "sha256:" NUL): the data no longer matches its template digest.
python3 -c "b = bytearray(open('kernel.bin', 'rb').read()); b[39 + 12 + 5] ^= 1; open('bad.bin', 'wb').write(b)"
check_exit "tampered kernel log" 1 "$CTRUST" log verify --pcrs pcrs.sha1 --pcrs pcrs.sha256 bad.bin
finish
