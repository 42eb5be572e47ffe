# The last step of every BuilderNet flavor (recipes/buildernet-*.toml): what the seed's
# finalize deletes because it differs between builds or is not needed at run time.
set -eu
root="$DESTDIR"

# Logs and caches go; their directories stay.
find "$root/var/log" "$root/var/cache" -xdev -type f -delete

rm -rf "$root/usr/share/doc"
rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub
rm -f "$root/etc/nvme/hostnqn" "$root/etc/nvme/hostid"
# dpkg's maintainer scripts and file lists: the image is never upgraded in place.
find "$root/var/lib/dpkg/info" -mindepth 1 -delete
