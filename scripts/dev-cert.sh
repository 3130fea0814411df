#!/bin/sh
# Makes a self-signed certificate for development (localhost, 127.0.0.1,
# ::1), valid 30 days: DIR/cert.pem and DIR/key.pem [DIR: ./dev-cert].
# Browsers warn about it (it is signed by nobody they trust); accept it
# once, or trust it for the session. Never use it in production.
#
#   scripts/dev-cert.sh
#   TLS_CERT=dev-cert/cert.pem TLS_KEY=dev-cert/key.pem ./build/examples/hello
#   curl --cacert dev-cert/cert.pem https://localhost:3443/
set -eu
dir=${1:-dev-cert}
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -days 30 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
echo "made $dir/cert.pem and $dir/key.pem"
