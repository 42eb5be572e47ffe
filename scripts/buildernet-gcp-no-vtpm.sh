# buildernet-gcp: Google's TDX VMs have no vTPM. Nothing may wait for its device, and the
# tools that would extend or read PCRs become no-ops, as in the seed.
set -eu
root="$DESTDIR"
systemctl --root="$root" mask dev-tpmrm0.device
for f in usr/lib/systemd/systemd-pcrextend usr/bin/tpm2 usr/bin/tss2; do
  rm -f "$root/$f"
  ln -s /usr/bin/echo "$root/$f"
done
