#!/usr/bin/env bash
# One-time (and re-runnable) InfluxDB 1.x setup for carbonedge: admin user, database, retention
# policies, hourly downsampling, and least-privilege users for the collector, Grafana and analytics.
#
#   INFLUX_URL=http://127.0.0.1:8086 SECRETS_DIR=/etc/carbonedge/secrets deploy/influxdb/setup-auth.sh
#
# Needs influxd running with [http] auth-enabled = true (deploy/influxdb/influxdb.conf).
# Passwords come from CARBONEDGE_INFLUX_{ADMIN,COLLECTOR,GRAFANA,ANALYTICS}_PASSWORD when set,
# else from SECRETS_DIR/<user>.password when it exists, else they are generated there (mode 0600).
# Running it again changes nothing that is already right (users, grants, RPs, CQs are upserted).
#
# Retention (override with RAW_RETENTION, ROLLUP_RETENTION):
#   autogen   (default RP) every measurement as written, kept RAW_RETENTION (default 730d = 2 years)
#   rollup_1h hourly rollups kept ROLLUP_RETENTION (default INF):
#     readings_1h  mean_/min_/max_/last_<field> per device and tag set. Energy counters are
#                  cumulative, so last_active_energy_import keeps energy between any two hours exact.
#     enpi, carbon the analytics results, same field names (carbon: CO2 and kWh summed per hour).
# The continuous queries recompute the last CQ_RESAMPLE_FOR (default 3d) every hour, so data
# that arrives late (a gateway's outbox draining after an outage) still reaches the rollups.
set -euo pipefail
umask 077

INFLUX_URL=${INFLUX_URL:-http://127.0.0.1:8086}
DB=${DATABASE:-carbonedge}
SECRETS_DIR=${SECRETS_DIR:-/etc/carbonedge/secrets}
RAW_RETENTION=${RAW_RETENTION:-730d}
ROLLUP_RETENTION=${ROLLUP_RETENTION:-INF}
CQ_RESAMPLE_FOR=${CQ_RESAMPLE_FOR:-3d}
CURL=(curl -sS --max-time 60)
[ -n "${INFLUX_CAFILE:-}" ] && CURL+=(--cacert "$INFLUX_CAFILE")

die() { echo "setup-auth: $*" >&2; exit 2; }
command -v curl >/dev/null || die "curl is missing: apt-get install curl"
[[ $DB =~ ^[A-Za-z0-9_]+$ ]] || die "database name '$DB' must be letters, digits and '_'"
mkdir -p "$SECRETS_DIR"

password_for() {  # password_for USER -> stdout; generated and stored when none is given
  local user=$1 var="CARBONEDGE_INFLUX_${1^^}_PASSWORD" file="$SECRETS_DIR/$1.password" pw
  if [ -n "${!var:-}" ]; then
    pw=${!var}
  elif [ -s "$file" ]; then
    pw=$(cat "$file")
  else
    pw=$(openssl rand -hex 24)
    printf '%s\n' "$pw" > "$file"
    chmod 600 "$file"
    echo "generated a password for $user in $file" >&2
  fi
  [[ $pw =~ ^[A-Za-z0-9_.,:@%+=-]{12,}$ ]] || die "the $user password must be at least 12 characters without quotes, spaces or backslashes"
  printf '%s' "$pw"
}

ADMIN_PW=$(password_for admin)

q() {  # q "STATEMENT" [user pass]: run InfluxQL, fail loudly on any error
  local out
  if [ $# -ge 3 ]; then
    out=$("${CURL[@]}" -u "$2:$3" -XPOST "$INFLUX_URL/query" --data-urlencode "q=$1") || die "InfluxDB at $INFLUX_URL did not answer"
  else
    out=$("${CURL[@]}" -u "admin:$ADMIN_PW" -XPOST "$INFLUX_URL/query" --data-urlencode "q=$1") || die "InfluxDB at $INFLUX_URL did not answer"
  fi
  if [[ $out == *'"error"'* ]]; then
    echo "$out" >&2
    return 1
  fi
  printf '%s' "$out"
}

"${CURL[@]}" -o /dev/null -f "$INFLUX_URL/ping" || die "InfluxDB at $INFLUX_URL does not answer /ping; start it first"

# 1. The admin user. InfluxDB accepts an unauthenticated CREATE USER only while no user exists.
if ! q "SHOW USERS" >/dev/null 2>&1; then
  "${CURL[@]}" -XPOST "$INFLUX_URL/query" --data-urlencode "q=CREATE USER \"admin\" WITH PASSWORD '$ADMIN_PW' WITH ALL PRIVILEGES" \
    | grep -q '"error"' && die "cannot log in as admin and cannot create it: users already exist with another admin password (set CARBONEDGE_INFLUX_ADMIN_PASSWORD)"
  q "SHOW USERS" >/dev/null || die "admin was created but cannot log in: is auth-enabled = true in influxdb.conf?"
  echo "created user admin"
fi

# 2. Database and retention policies.
q "CREATE DATABASE \"$DB\"" >/dev/null
q "ALTER RETENTION POLICY \"autogen\" ON \"$DB\" DURATION $RAW_RETENTION SHARD DURATION 7d DEFAULT" >/dev/null
if q "SHOW RETENTION POLICIES ON \"$DB\"" | grep -q '"rollup_1h"'; then
  q "ALTER RETENTION POLICY \"rollup_1h\" ON \"$DB\" DURATION $ROLLUP_RETENTION" >/dev/null
else
  q "CREATE RETENTION POLICY \"rollup_1h\" ON \"$DB\" DURATION $ROLLUP_RETENTION REPLICATION 1 SHARD DURATION 52w" >/dev/null
fi
echo "database $DB: autogen keeps $RAW_RETENTION (default), rollup_1h keeps $ROLLUP_RETENTION"

# 3. Hourly downsampling (continuous queries are dropped and recreated so a rerun applies changes).
declare -A CQ
CQ[cq_readings_1h]="SELECT mean(*), min(*), max(*), last(*) INTO \"$DB\".\"rollup_1h\".\"readings_1h\" FROM \"$DB\".\"autogen\".\"readings\" GROUP BY time(1h), *"
CQ[cq_enpi_1h]="SELECT last(\"energy_kwh\") AS \"energy_kwh\", last(\"production\") AS \"production\", last(\"sec\") AS \"sec\", last(\"baseline_kwh\") AS \"baseline_kwh\", last(\"savings_kwh\") AS \"savings_kwh\", last(\"cusum_kwh\") AS \"cusum_kwh\" INTO \"$DB\".\"rollup_1h\".\"enpi\" FROM \"$DB\".\"autogen\".\"enpi\" GROUP BY time(1h), *"
CQ[cq_carbon_1h]="SELECT sum(\"co2_kg\") AS \"co2_kg\", sum(\"energy_kwh\") AS \"energy_kwh\", last(\"factor_version\") AS \"factor_version\" INTO \"$DB\".\"rollup_1h\".\"carbon\" FROM \"$DB\".\"autogen\".\"carbon\" GROUP BY time(1h), *"
for name in cq_readings_1h cq_enpi_1h cq_carbon_1h; do
  q "DROP CONTINUOUS QUERY \"$name\" ON \"$DB\"" >/dev/null 2>&1 || true
  q "CREATE CONTINUOUS QUERY \"$name\" ON \"$DB\" RESAMPLE EVERY 1h FOR $CQ_RESAMPLE_FOR BEGIN ${CQ[$name]} END" >/dev/null \
    || die "could not create continuous query $name"
done
echo "continuous queries: ${!CQ[*]} (hourly, recomputing the last $CQ_RESAMPLE_FOR)"

# 4. Least-privilege users.
upsert_user() {  # upsert_user NAME PRIVILEGE
  local user=$1 priv=$2 pw
  pw=$(password_for "$user")
  if q "SHOW USERS" | grep -q "\"$user\""; then
    q "SET PASSWORD FOR \"$user\" = '$pw'" >/dev/null
  else
    q "CREATE USER \"$user\" WITH PASSWORD '$pw'" >/dev/null
  fi
  q "REVOKE ALL PRIVILEGES ON \"$DB\" FROM \"$user\"" >/dev/null
  q "GRANT $priv ON \"$DB\" TO \"$user\"" >/dev/null
  echo "user $user: $priv on $DB"
}
# The collector reads as well as writes: before it writes a replayed batch (a gateway resending after
# an outage) it reads the points already stored at those keys, so that a different value is reported
# as a conflict instead of silently overwriting the first one (docs/collector.md).
upsert_user collector ALL
upsert_user grafana READ
upsert_user analytics ALL
echo "done; passwords are in $SECRETS_DIR (mode 0600)"
