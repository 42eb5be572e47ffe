# The buildernet layer's finalize step (recipes/buildernet.toml), run in the sandbox with the
# image at $DESTDIR and the tools tree's systemd as /. What the seed's finalize does, plus
# what mkosi does for it before (users from sysusers.d, presets).
set -eu
root="$DESTDIR"

# The users and groups of sysusers.d (bnet, the locked service users, eth), made now so that
# every boot has the same ids. SOURCE_DATE_EPOCH fixes the "last change" field.
systemd-sysusers --root="$root"

# Units enabled or disabled as the preset files say (ours in etc/systemd/system-preset).
systemctl --root="$root" preset-all

# Not measured into the PCRs we predict yet; not wanted on a builder.
systemctl --root="$root" mask \
  systemd-pcrphase.service systemd-pcrphase-initrd.service systemd-pcrphase-sysinit.service \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  systemd-confext.service systemd-sysext.service systemd-pstore.service

# Accounts that run commands through sudo must not be expired (sysusers locks `u!` users
# with an expiry date: the seed's `chage --expiredate -1`) and must not look like "password
# must be changed" (a last change on day 0, which SOURCE_DATE_EPOCH=0 gives: the seed's
# `chage --lastday 1` for bnet and operator-api; config-watchdog uses sudo too). The last
# change is emptied (aging off) rather than set to 1, because hermetic's clean-up sets
# every non-empty one to the day of SOURCE_DATE_EPOCH.
# shadow fields: name:password:lastchg:min:max:warn:inactive:expire:reserved
shadow="$root/etc/shadow"
awk -F: -v OFS=: '
  $1 == "config-watchdog" || $1 == "operator-api" { $8 = "" }
  $1 == "bnet" || $1 == "config-watchdog" || $1 == "operator-api" { $3 = "" }
  { print }
' "$shadow" > "$BUILDDIR/shadow"
for user in bnet config-watchdog operator-api; do
  grep -q "^$user:" "$BUILDDIR/shadow" || { echo "finalize: no user $user in /etc/shadow" >&2; exit 1; }
done
cat "$BUILDDIR/shadow" > "$shadow"
