#!/usr/bin/env bash
# Run a bench script with --dir on XFS (issue 13): an XFS image in a file on the same disk as
# the repository, loop-mounted for the run, unmounted and removed after. Root only; installs
# xfsprogs from apt when mkfs.xfs is missing. Every result's meta.json records the filesystem
# of --dir (storage.fs.fs_type), so the XFS rows say so.
#
#   bench/xfs.sh SCRIPT [ARGS...]     e.g. bench/xfs.sh bench/tail-remedies.sh results/X --quick
#   The script gets DIR=<mount point>; scripts that take no DIR get --dir appended by EXTRA_DIR=1.
#   XFS_SIZE (default 16G, sparse) sets the image size; FS=ext4 makes an ext4 image instead (the
#   same loop device, to tell the filesystem's effect from the loop device's).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/xfs.sh SCRIPT [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "xfs: needs root (losetup, mount)" >&2; exit 2; }
if ! command -v mkfs.xfs >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq xfsprogs) >/dev/null 2>&1 \
    || { echo "xfs: could not install xfsprogs (apt-get install xfsprogs)" >&2; exit 2; }
fi
img_dir=${TMPDIR:-/var/tmp}
img=$(mktemp -p "$img_dir" snapbench-xfs.XXXXXX.img)
mnt=$(mktemp -d -p "$img_dir" snapbench-xfs.XXXXXX)
cleanup() { umount "$mnt" 2>/dev/null || true; [ -n "${dev:-}" ] && losetup -d "$dev" 2>/dev/null; rm -rf "$mnt" "$img"; }
trap cleanup EXIT
truncate -s "${XFS_SIZE:-16G}" "$img"
dev=$(losetup --find --show --direct-io=on "$img")
case "${FS:-xfs}" in
  xfs) mkfs.xfs -q -f "$dev" ;;
  ext4) mkfs.ext4 -q -F "$dev" ;;
  *) echo "xfs: FS must be xfs or ext4" >&2; exit 2 ;;
esac
mount "$dev" "$mnt"
echo "${FS:-xfs}: $dev ($img, ${XFS_SIZE:-16G}) on $mnt: $(findmnt -no FSTYPE,OPTIONS "$mnt")" >&2
DIR="$mnt" "$@"
