#!/bin/bash
# acme.sh's post-hook (as acme-le): register the new certificate with BuilderHub, write its
# expiry metric, and put it where haproxy serves it.
set -eu -o pipefail
source /usr/bin/helper-functions.sh

domain=${DNS_NAMES%%,*}
cert=$(find "$ACME_HOME" -name "$domain.cer" | head -n 1)
[ -n "$cert" ] || { log "acme-le (post-hook): no certificate for $domain"; exit 1; }

# JSON string of the PEM: newlines as \n.
pem=$(awk '{ printf "%s\\n", $0 }' "$cert")
if ! curl -fsSL --retry 3 --retry-delay 60 --retry-connrefused -H 'Content-Type: application/json' \
    -d "{\"tls_cert\": \"$pem\"}" http://localhost:7937/api/l1-builder/v1/register_credentials/instance; then
  log "acme-le (post-hook): BuilderHub did not take the TLS certificate"
  exit 1
fi
log "acme-le (post-hook): TLS certificate registered with BuilderHub"

expiry=$(date -d "$(openssl x509 -enddate -noout -in "$cert" | cut -d= -f2)" +%s)
cat > "$RUNTIME_DIRECTORY/acme_le_cert_expiration.prom" <<METRIC
# HELP acme_le_cert_expiration_seconds When the ACME certificate expires (Unix time).
# TYPE acme_le_cert_expiration_seconds gauge
acme_le_cert_expiration_seconds{domain="$domain"} $expiry
METRIC

ln -fsr "$PRIV_KEY" "$(dirname "$cert")/$domain.key"
install -D -m 0644 "$cert" /var/lib/persistent/haproxy/static/le.cer
echo "export CERT_PATH=$cert" > /tmp/acme-le-cert-path
