#!/bin/sh
# /init of the VM's initramfs (busybox): load the modules, make the host's
# root (9p, read-only) writable with a tmpfs overlay, and hand over to
# tests/vm/guest.sh in it.  The settings come as ppvm_* variables from the
# kernel command line.
export PATH=/bin
fail() {
    echo "ppvm: $*"
    echo "PIUPARTS-VM-RESULT rc=90 stage=initramfs"
    poweroff -f
}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /modules); do
    insmod "/lib/modules/$module.ko" || fail "insmod $module failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower \
    || fail "cannot mount the host's root (9p)"
mount -t tmpfs -o "size=${ppvm_tmpfs:-1g},mode=0755" tmpfs /rw || fail "cannot mount the tmpfs"
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "cannot mount the overlay"
for fs in dev proc sys; do
    mount --move "/$fs" "/newroot/$fs" || fail "cannot move /$fs"
done
exec switch_root /newroot /bin/sh "$ppvm_repo/tests/vm/guest.sh"
