#!/bin/bash
# After acme-le (as root): hand the key and chain to operator-api and the attested TLS
# server, and make haproxy load the deployed certificate.
set -eu -o pipefail

source /tmp/acme-le-cert-path
rm -f /tmp/acme-le-cert-path
chain="$(dirname "$CERT_PATH")/fullchain.cer"
for svc in operator-api attested-tls-proxy-server; do
  install -D -m 0600 -o "$svc" -g "$svc" "$PRIV_KEY" "/var/lib/persistent/$svc/key.pem"
  ln -fsr "$chain" "/var/lib/persistent/$svc/cert.pem"
done
chmod 0660 /var/lib/persistent/haproxy/certs/*.pem
chown haproxy:haproxy /var/lib/persistent/haproxy/certs/*.pem
systemctl reload haproxy.service
