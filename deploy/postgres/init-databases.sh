#!/bin/sh
# Runs once, when the PostgreSQL volume is first created: a role and a database per Omnitill
# component, each role owning its own database and nothing else. Passwords come from
# <COMPONENT>_DB_PASSWORD (see compose.yaml).
set -eu

for component in inventory promotion customer payment order dispatcher gateway; do
  variable="$(echo "$component" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password="$(printenv "$variable" || true)"
  if [ -z "$password" ]; then
    echo "$variable is not set" >&2
    exit 1
  fi
  psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set name="pos_$component" --set password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
