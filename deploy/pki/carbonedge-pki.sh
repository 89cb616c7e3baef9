#!/usr/bin/env bash
# carbonedge PKI: a private CA, the broker's server certificate, one client certificate per
# gateway, per collector and per analytics host, revocation, and the Mosquitto ACL file that goes with them.
#
#   carbonedge-pki.sh init                          create the CA (once, on an offline machine if you can)
#   carbonedge-pki.sh broker HOST [HOST|IP ...]     server certificate for Mosquitto (names clients connect to)
#   carbonedge-pki.sh gateway SITE GATEWAY          client certificate for gateway GATEWAY of site SITE
#   carbonedge-pki.sh collector NAME                client certificate for a collector (reads every site)
#   carbonedge-pki.sh analytics NAME                client certificate for analytics (monitor, status: reads, publishes alerts)
#   carbonedge-pki.sh revoke CN                     revoke a certificate (a stolen or retired gateway) and refresh the CRL
#   carbonedge-pki.sh acl                           rewrite mosquitto.acl from the issued, unrevoked identities
#   carbonedge-pki.sh list                          issued certificates with state and expiry
#
# Files go to $PKI_DIR (default ./pki). Keys are EC P-256 (cheap on a Raspberry Pi, TLS 1.2/1.3),
# written mode 0600. Mosquitto maps a client certificate's CN to the MQTT username
# (use_identity_as_username), so the CN is the identity the ACL grants:
#   gateway   CN = GATEWAY@SITE   may publish only carbonedge/v1/SITE/GATEWAY/{telemetry,status,health}
#                                 and read only carbonedge/v1/SITE/GATEWAY/ack
#   collector CN = collector:NAME reads telemetry/status/health of every site, writes ack/deadletter
#   analytics CN = analytics:NAME reads telemetry/status/health/ack of every site (never writes them) and
#                                 publishes alert transitions on carbonedge/v1/SITE/analytics/alerts[/ALERT_ID]
# '@' and ':' cannot occur in a site or gateway identifier (docs/wire-format.md), so a CN names
# exactly one gateway. Mosquitto's %u pattern substitution covers a single topic level and our
# namespace binds two (site and gateway), so the ACL lists each identity's exact topics instead.
set -euo pipefail
umask 077

PKI_DIR=${PKI_DIR:-./pki}
CA_DAYS=${CA_DAYS:-3650}
CERT_DAYS=${CERT_DAYS:-825}   # renew before expiry: the gateway reports its certificate's end date
ID_RE='^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'

die() { echo "carbonedge-pki: $*" >&2; exit 2; }
need_ca() { [ -f "$PKI_DIR/ca.key" ] || die "no CA in $PKI_DIR: run '$0 init' first"; }
check_id() { [[ $2 =~ $ID_RE ]] || die "$1 '$2' is not a valid identifier (letters, digits, '_', '.', '-'; at most 64; no spaces or slashes)"; }

write_openssl_cnf() {
  cat > "$PKI_DIR/openssl.cnf" <<EOF
[ ca ]
default_ca = carbonedge_ca
[ carbonedge_ca ]
dir               = $PKI_DIR
database          = \$dir/index.txt
new_certs_dir     = \$dir/newcerts
serial            = \$dir/serial
crlnumber         = \$dir/crlnumber
certificate       = \$dir/ca.crt
private_key       = \$dir/ca.key
default_md        = sha256
default_days      = $CERT_DAYS
default_crl_days  = 30
policy            = policy_any
unique_subject    = yes
copy_extensions   = copy
[ policy_any ]
organizationName  = optional
commonName        = supplied
[ req ]
distinguished_name = dn
prompt             = no
[ dn ]
CN = carbonedge
[ v3_ca ]
basicConstraints       = critical, CA:true, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
[ server ]
basicConstraints       = critical, CA:false
keyUsage               = critical, digitalSignature, keyAgreement
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
[ client ]
basicConstraints       = critical, CA:false
keyUsage               = critical, digitalSignature, keyAgreement
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
EOF
}

issue() {  # issue NAME CN PROFILE [SAN]
  local name=$1 cn=$2 profile=$3 san=${4:-}
  need_ca
  local out="$PKI_DIR/issued/$name"
  [ -e "$out.crt" ] && die "$name already has a certificate ($out.crt); revoke it first to reissue"
  mkdir -p "$PKI_DIR/issued"
  openssl ecparam -name prime256v1 -genkey -noout -out "$out.key" 2>/dev/null
  chmod 600 "$out.key"
  local san_arg=()
  [ -n "$san" ] && san_arg=(-addext "subjectAltName=$san")
  openssl req -new -key "$out.key" -subj "/O=carbonedge/CN=$cn" "${san_arg[@]}" -out "$out.csr" 2>/dev/null
  openssl ca -batch -config "$PKI_DIR/openssl.cnf" -extensions "$profile" -in "$out.csr" -out "$out.crt" -notext 2>"$out.log" \
    || { cat "$out.log" >&2; rm -f "$out.key" "$out.csr" "$out.crt"; die "openssl could not issue $cn"; }
  rm -f "$out.csr" "$out.log"
  chmod 644 "$out.crt"
  echo "issued $cn: $out.crt, $out.key (until $(openssl x509 -in "$out.crt" -noout -enddate | cut -d= -f2))"
}

gen_crl() {
  openssl ca -config "$PKI_DIR/openssl.cnf" -gencrl -out "$PKI_DIR/crl.pem" 2>/dev/null
  chmod 644 "$PKI_DIR/crl.pem"
}

gen_acl() {
  need_ca
  local acl="$PKI_DIR/mosquitto.acl.tmp"
  {
    echo "# Generated by carbonedge-pki.sh from $PKI_DIR/index.txt; do not edit (run '$0 acl')."
    echo "# Identity = client certificate CN (use_identity_as_username). Anything not granted here is refused:"
    echo "# MQTT v5 publishers get PUBACK reason 0x87 (not authorized), subscribers simply receive nothing."
    # index.txt: state \t expiry \t revoked \t serial \t file \t subject
    awk -F'\t' '$1 == "V" { print $6 }' "$PKI_DIR/index.txt" | sed -n 's#.*/CN=\([^/]*\).*#\1#p' | sort -u | while read -r cn; do
      case "$cn" in
        *@*)
          gw=${cn%%@*}; site=${cn#*@}
          echo ""
          echo "user $cn"
          echo "topic write carbonedge/v1/$site/$gw/telemetry"
          echo "topic write carbonedge/v1/$site/$gw/status"
          echo "topic write carbonedge/v1/$site/$gw/health"
          echo "topic read carbonedge/v1/$site/$gw/ack"
          ;;
        collector:*)
          echo ""
          echo "user $cn"
          echo "topic read carbonedge/v1/+/+/telemetry"
          echo "topic read carbonedge/v1/+/+/status"
          echo "topic read carbonedge/v1/+/+/health"
          echo "topic readwrite carbonedge/v1/+/+/ack"
          echo "topic write carbonedge/v1/+/+/deadletter"
          ;;
        analytics:*)
          echo ""
          echo "user $cn"
          echo "topic read carbonedge/v1/+/+/telemetry"
          echo "topic read carbonedge/v1/+/+/status"
          echo "topic read carbonedge/v1/+/+/health"
          echo "topic read carbonedge/v1/+/+/ack"
          echo "topic readwrite carbonedge/v1/+/analytics/alerts"
          echo "topic readwrite carbonedge/v1/+/analytics/alerts/#"
          ;;
      esac
    done
  } > "$acl"
  chmod 644 "$acl"
  mv "$acl" "$PKI_DIR/mosquitto.acl"
  echo "wrote $PKI_DIR/mosquitto.acl (reload Mosquitto: systemctl reload mosquitto, or send it SIGHUP)"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  init)
    [ -f "$PKI_DIR/ca.key" ] && die "a CA already exists in $PKI_DIR"
    mkdir -p "$PKI_DIR/newcerts"
    PKI_DIR=$(cd "$PKI_DIR" && pwd)
    : > "$PKI_DIR/index.txt"
    echo 1000 > "$PKI_DIR/serial"
    echo 1000 > "$PKI_DIR/crlnumber"
    write_openssl_cnf
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/ca.key" 2>/dev/null
    chmod 600 "$PKI_DIR/ca.key"
    openssl req -new -x509 -config "$PKI_DIR/openssl.cnf" -extensions v3_ca -key "$PKI_DIR/ca.key" \
      -subj "/O=carbonedge/CN=${CA_NAME:-carbonedge plant CA}" -days "$CA_DAYS" -out "$PKI_DIR/ca.crt"
    chmod 644 "$PKI_DIR/ca.crt"
    gen_crl
    echo "CA created in $PKI_DIR: ca.crt (give to every broker and client), ca.key (keep offline, mode 600)"
    ;;
  broker)
    [ $# -ge 1 ] || die "usage: $0 broker HOST [HOST|IP ...]"
    PKI_DIR=$(cd "$PKI_DIR" && pwd)
    san=""
    for h in "$@"; do
      if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="${san:+,}IP:$h"; else san+="${san:+,}DNS:$h"; fi
    done
    issue "broker-$1" "$1" server "$san"
    ;;
  gateway)
    [ $# -eq 2 ] || die "usage: $0 gateway SITE GATEWAY"
    check_id site "$1"; check_id gateway "$2"
    PKI_DIR=$(cd "$PKI_DIR" && pwd)
    issue "gateway-$1-$2" "$2@$1" client
    gen_acl
    ;;
  collector)
    [ $# -eq 1 ] || die "usage: $0 collector NAME"
    check_id collector "$1"
    PKI_DIR=$(cd "$PKI_DIR" && pwd)
    issue "collector-$1" "collector:$1" client
    gen_acl
    ;;
  analytics)
    [ $# -eq 1 ] || die "usage: $0 analytics NAME"
    check_id analytics "$1"
    PKI_DIR=$(cd "$PKI_DIR" && pwd)
    issue "analytics-$1" "analytics:$1" client
    gen_acl
    ;;
  revoke)
    [ $# -eq 1 ] || die "usage: $0 revoke CN   (e.g. gw1@steel-plant, collector:plant-server-1 or analytics:plant-server-1)"
    PKI_DIR=$(cd "$PKI_DIR" && pwd)
    need_ca
    file=$(awk -F'\t' -v cn="$1" '$1 == "V" { s = $6; sub(/.*\/CN=/, "", s); sub(/\/.*/, "", s); if (s == cn) print $4 }' "$PKI_DIR/index.txt" | head -1)
    [ -n "$file" ] || die "no valid certificate with CN $1"
    openssl ca -config "$PKI_DIR/openssl.cnf" -revoke "$PKI_DIR/newcerts/$file.pem" 2>/dev/null
    for f in "$PKI_DIR"/issued/*.crt; do
      if [ "$(openssl x509 -in "$f" -noout -serial | cut -d= -f2)" = "$file" ]; then
        mv "$f" "$f.revoked"; rm -f "${f%.crt}.key"
      fi
    done
    gen_crl
    gen_acl
    echo "revoked $1; copy $PKI_DIR/crl.pem to the broker (crlfile) and reload it"
    ;;
  acl)
    PKI_DIR=$(cd "$PKI_DIR" && pwd)
    gen_acl
    ;;
  list)
    need_ca
    awk -F'\t' '{ st = ($1 == "V") ? "valid  " : ($1 == "R") ? "revoked" : "expired"; sub(/.*\/CN=/, "", $6); sub(/\/.*/, "", $6); printf "%s  until 20%s-%s-%s  %s\n", st, substr($2,1,2), substr($2,3,2), substr($2,5,2), $6 }' "$PKI_DIR/index.txt"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || exit 2
    ;;
esac
