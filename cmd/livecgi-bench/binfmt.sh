#!/bin/sh
# Registers Debian's qemu-user-static interpreters for arm, aarch64,
# mipsel and riscv64 with binfmt_misc (root only), so that their binaries
# run when exec'd directly: go-plugin execs the plugin path itself, so the
# arm end-to-end test and make demo TARGET=… need this, while unit test
# binaries can be run as qemu-arm-static x.test.
# Idempotent; prints what it did. Undo: echo -1 > /proc/sys/fs/binfmt_misc/qemu-arm
set -eu
dir=/proc/sys/fs/binfmt_misc
if [ "$(id -u)" != 0 ]; then
  echo "binfmt: not root; arm binaries run only through qemu-*-static explicitly (as root: sh $0)" >&2
  exit 0
fi
if [ ! -e "$dir/register" ]; then
  mount -t binfmt_misc binfmt_misc "$dir" || { echo "binfmt: cannot mount binfmt_misc" >&2; exit 0; }
fi
for arch in arm aarch64 mipsel riscv64; do
  conf=/usr/lib/binfmt.d/qemu-$arch.conf
  if [ -e "$dir/qemu-$arch" ]; then
    echo "binfmt: qemu-$arch already registered"
  elif [ -r "$conf" ]; then
    cat "$conf" > "$dir/register" && echo "binfmt: registered qemu-$arch from $conf"
  else
    echo "binfmt: $conf missing: apt-get install qemu-user-static" >&2
  fi
done
