#!/bin/sh
# PID 1 of the VM, in the host's root made writable by a tmpfs overlay
# (tests/vm/init.sh).  Makes a volume group on the virtio disk, fills its
# origin volume with 'piuparts lvm-setup' from the base the host prepared,
# runs the LVM tests and reports on the serial console; then powers off.
# Settings (kernel command line): ppvm_repo (the checkout, anywhere), ppvm_python, ppvm_host_cache,
# ppvm_base (the base's root directory there, also on /dev/vdb: a faster
# read than 9p under TCG).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
export LVM_SUPPRESS_FD_WARNINGS=1 CI=true
export PIUPARTS_TEST_CACHE=/var/tmp/ppvm-cache PIUPARTS_TEST_LVM_VOLUME=ppvg/base

stage() { echo "PIUPARTS-VM-STAGE $1 $(cut -d' ' -f1 /proc/uptime)"; }
finish() {
    stage end
    echo "PIUPARTS-VM-RESULT rc=$1${2:+ stage=$2}"
    sync
    busybox poweroff -f
}

stage userspace
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
# Fresh, empty /dev/shm, /run and /tmp; what the run needs from the host
# under them (a checkout in /tmp, say) is bound back from the view before.
mkdir -p /.ppvm-host
for dir in /dev/shm /run /tmp; do
    mkdir -p "/.ppvm-host$dir"
    mount --bind "$dir" "/.ppvm-host$dir"
    mount -t tmpfs -o mode=1777 tmpfs "$dir"
    for needed in "$ppvm_repo" "${ppvm_python%/bin/*}" "$ppvm_host_cache"; do
        case "$needed/" in
            "$dir"/*) mkdir -p "$needed" && mount --bind "/.ppvm-host$needed" "$needed" || finish 95 "bind $needed";;
        esac
    done
done
mkdir -p /run/lock /run/lvm "$PIUPARTS_TEST_CACHE"
# No udev in here: LVM makes its device nodes itself; no dmeventd, no backups.
cat > /etc/lvm/lvm.conf <<'CONF'
devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { use_lvmpolld = 0 event_activation = 0 }
backup { backup = 0 archive = 0 }
CONF
mount -o ro /dev/vdb "$ppvm_base" || finish 94 base
pvcreate -q -y /dev/vda && vgcreate -q ppvg /dev/vda || finish 91 vgcreate

cd "$ppvm_repo" || finish 92 cd
stage lvm-setup
"$ppvm_python" -m piuparts lvm-setup ppvg/base --size 1G --cache-dir "$ppvm_host_cache" || finish 93 lvm-setup

stage pytest
# What is the LVM backend's own: a snapshot made, tested in and removed (the
# clean fixture), removed on an exception and on Ctrl-C, a killed run's
# snapshot removed by cleanup, and its bad input.  Left to the host's
# backends, whose code it shares: the leftover findings of a tree walked
# without an upper directory (the existing backend's hard-link case, and
# test_state_overlay's both-ways check) and the namespaces (overlay.booted).
# Under TCG each of those took two minutes of the suite's fifteen.  Ctrl-C
# during the install is left out too (75 s here): the snapshot's part of it
# is the unwinding the exception case takes, with the processes still in
# it the killed run's that cleanup removes; what a Ctrl-C adds (the
# signal's handling) is the command line's, the same for every backend.
"$ppvm_python" -m pytest -p no:cacheprovider -p no:xdist --color=no -v -rfEs --durations=0 --basetemp=/tmp/pytest \
    tests/integration/test_backend_contract.py tests/integration/test_backend_lvm.py \
    -k "lvm and not test_leftover_fixture_gives_the_same_findings and not test_scripts_run_in_namespaces_of_their_own and not test_ctrl_c_during_the_install_leaves_nothing"
rc=$?
stage lvs
echo "PIUPARTS-VM-LVS-BEGIN"
lvs --noheadings -o lv_name,origin ppvg
echo "PIUPARTS-VM-LVS-END"
finish $rc
