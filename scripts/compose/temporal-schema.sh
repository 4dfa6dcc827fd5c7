#!/bin/sh
# Creates (once) and migrates Temporal's two PostgreSQL databases with temporal-sql-tool, in the
# temporalio/admin-tools container of docker-compose.yml. It runs again on every `docker compose up`,
# so it must leave a database it already set up as it is: update-schema only applies the versions a
# database does not have yet, and only a database without a schema version gets set up from scratch.
set -eu

sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"; }

migrate() { # database, schema directory under /etc/temporal/schema/postgresql/v12
  dir=/etc/temporal/schema/postgresql/v12/$2/versioned
  if sql --db "$1" update-schema -d "$dir"; then
    return
  fi
  echo "temporal-schema: setting up $1 from scratch"
  # Fails when an earlier attempt created the database but stopped before its schema; setup-schema
  # below then fails for any real problem.
  sql --db "$1" create || true
  sql --db "$1" setup-schema -v 0.0
  sql --db "$1" update-schema -d "$dir"
}

migrate temporal temporal
migrate temporal_visibility visibility
echo "temporal-schema: done"
