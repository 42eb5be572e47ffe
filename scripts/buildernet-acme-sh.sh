# The buildernet layer's acme.sh (recipes/buildernet.toml, step `acme-sh`): the three files the
# recipe pins by SHA-256 (acme.sh at the seed's commit), seen under $TARBALLDIR/sources/, laid
# where acme-le.service and acme-le-renewal.service use them: the script on PATH, the deploy
# and DNS hooks in /etc/acme-le (ConfigurationDirectory), which the units link into acme.sh's
# home.
set -eu
src="$TARBALLDIR/sources"
root="$DESTDIR"

install -d -m 0755 "$root/usr/bin" "$root/etc/acme-le" "$root/etc/acme-le/deploy" "$root/etc/acme-le/dnsapi"
install -m 0755 "$src/acme.sh" "$root/usr/bin/acme.sh"
install -m 0755 "$src/acme.sh-dnsapi-dns_cf.sh" "$root/etc/acme-le/dnsapi/dns_cf.sh"

# deploy/haproxy.sh hands the new certificate to haproxy's runtime API with `echo -e`, which
# Debian's /bin/sh (dash) does not know: it would send a literal "-e" and unexpanded "\n".
# The same bytes with printf (the command prefix kept for a master socket), then the file
# as it is and the empty line that ends the payload. Exactly one line must change.
hook="$root/etc/acme-le/deploy/haproxy.sh"
old="_socat_cert_set_cmd=\"echo -e '\${_cmdpfx}set ssl cert \${_pem} <<\\n\$(cat \"\${_pem}\")\\n' | socat '\${_statssock}' - | grep -q 'Transaction created'\""
new="_socat_cert_set_cmd=\"{ printf '%sset ssl cert %s <<\\n' '\${_cmdpfx}' '\${_pem}'; cat -- '\${_pem}'; printf '\\n'; } | socat '\${_statssock}' - | grep -q 'Transaction created'\""
count=0
: > "$hook"
while IFS= read -r line || [ -n "$line" ]; do
  trimmed="${line#"${line%%[! ]*}"}"
  if [ "$trimmed" = "$old" ]; then
    printf '%s%s\n' "${line%%[! ]*}" "$new" >> "$hook"
    count=$((count + 1))
  else
    printf '%s\n' "$line" >> "$hook"
  fi
done < "$src/acme.sh-deploy-haproxy.sh"
if [ "$count" -ne 1 ]; then
  echo "acme-sh: expected one \`echo -e\` line in deploy/haproxy.sh, found $count" >&2
  exit 1
fi
chmod 0755 "$hook"
