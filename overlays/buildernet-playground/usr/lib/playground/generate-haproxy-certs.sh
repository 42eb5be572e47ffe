#!/bin/bash
# playground: a self-signed certificate for haproxy (localhost, 127.0.0.1 and the QEMU
# host 10.0.2.2), made once.
set -eu -o pipefail

certs=/var/lib/persistent/haproxy/certs
static=/var/lib/persistent/haproxy/static
if compgen -G "$certs/*.pem" > /dev/null; then
  echo "playground: haproxy already has a certificate"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem"
openssl req -new -x509 -key "$work/key.pem" -sha256 -days 3650 -subj "/O=Playground/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.0.2.2" -out "$work/cert.pem"
cat "$work/key.pem" "$work/cert.pem" > "$certs/localhost.pem"
install -m 0644 "$work/cert.pem" "$static/le.cer"
chown haproxy:haproxy "$certs/localhost.pem" "$static/le.cer"
chmod 0660 "$certs/localhost.pem"
echo "playground: made a self-signed certificate for haproxy"
