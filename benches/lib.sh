# Shared by the benches/*.sh scripts: source it, do not run it.

# test_certificate DIR: a self-signed ECDSA certificate for localhost and
# 127.0.0.1, valid two days, as DIR/cert.pem and DIR/key.pem.
test_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$1/key.pem" -out "$1/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
}
