#!/usr/libexec/ctrust/busybox sh
# The DaemonSet's init container: installs ctrust-runtime and ctrust-hook (with their own
# loader and libraries, built by scripts/images) on the node, under DEST (the hostPath of the
# prefix the images were built for, default /opt/ctrust):
#   DEST/ID/bin, DEST/ID/lib   this build's files (ID: a digest of them); never changed once
#                              installed, so a runtime call in flight keeps its files
#   DEST/bin/ctrust-runtime    links to this build's, replaced atomically (rename)
#   DEST/bin/ctrust-hook
# Nothing else on the node changes: the container runtime uses ctrust only once its
# configuration names DEST/bin/ctrust-runtime (docs/runtimes/kubernetes.md).
set -eu
bb=/usr/libexec/ctrust/busybox
dest=${1:?usage: install-node DEST}
src=/usr/share/ctrust/node
id=$($bb cat "$src/ID")
$bb mkdir -p "$dest/bin"
if [ ! -f "$dest/$id/ID" ]; then
  $bb rm -rf "$dest/.$id.tmp"
  $bb cp -a "$src" "$dest/.$id.tmp"
  $bb rm -rf "$dest/$id"
  $bb mv "$dest/.$id.tmp" "$dest/$id"
fi
for b in ctrust-runtime ctrust-hook; do
  $bb ln -sfn "../$id/bin/$b" "$dest/bin/.$b.new"
  $bb mv -f "$dest/bin/.$b.new" "$dest/bin/$b"
done
# Earlier builds' files stay until the operator removes them: a container runtime may still
# be running one of them.
echo "install-node: ctrust-runtime and ctrust-hook of build $id installed in $dest/bin"
