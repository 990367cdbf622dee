#!/bin/sh
# make-certs.sh [--ip ADDR]... [--days N] DIR NAME...
#
# Creates the cluster CA and one certificate per node for the links' mutual TLS
# (avmd --tls-cert DIR/NAME.crt --tls-key DIR/NAME.key --tls-ca DIR/ca.crt):
#   DIR/ca.key, DIR/ca.crt      the CA (made once; reused when present)
#   DIR/NAME.key, DIR/NAME.crt  per NAME: CN=NAME, SAN DNS:NAME (and IP:ADDR for
#                               every --ip), signed by the CA; made again when run
#                               again for that NAME
# Keys are EC P-256, mode 0600. Certificates last --days days (default 825; 0 makes
# one that has expired by the next second, for tests; the CA 3650). NAME must be the node's --name: a peer is accepted only with a
# certificate that names the machine it claims to be.
# Needs the openssl command.
set -eu

usage() {
    echo "usage: $0 [--ip ADDR]... [--days N] DIR NAME..." >&2
    exit 2
}

ips=""
days=825
while [ $# -gt 0 ]; do
    case "$1" in
    --ip)
        [ $# -ge 2 ] || usage
        ips="$ips $2"
        shift 2
        ;;
    --days)
        [ $# -ge 2 ] || usage
        case "$2" in '' | *[!0-9]*) echo "$0: --days needs a number" >&2; exit 2 ;; esac
        days=$2
        shift 2
        ;;
    -h | --help) usage ;;
    --*) echo "$0: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || usage
dir=$1
shift
command -v openssl >/dev/null 2>&1 || { echo "$0: needs the openssl command" >&2; exit 1; }
for name in "$@"; do
    case "$name" in
    '' | *[!A-Za-z0-9._-]*)
        echo "$0: $name: a node name is letters, digits, '-', '_' and '.'" >&2
        exit 2
        ;;
    esac
done

umask 077
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -f "$dir/ca.key" ] && [ -f "$dir/ca.crt" ]; then
    echo "reusing the CA $dir/ca.crt"
else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 \
        -subj "/CN=avm cluster CA $(openssl rand -hex 6)" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    chmod 600 "$dir/ca.key"
    chmod 644 "$dir/ca.crt"
    echo "made the CA $dir/ca.key $dir/ca.crt (valid 3650 days)"
fi

for name in "$@"; do
    san="DNS:$name"
    for ip in $ips; do
        san="$san,IP:$ip"
    done
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    chmod 600 "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$tmp/$name.csr" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    cat >"$tmp/$name.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EOF
    openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$days" \
        -extfile "$tmp/$name.ext" -out "$dir/$name.crt" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    chmod 644 "$dir/$name.crt"
    echo "made $dir/$name.key $dir/$name.crt (CN=$name, $san, valid $days days)"
done
