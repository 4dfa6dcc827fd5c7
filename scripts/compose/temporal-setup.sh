#!/bin/sh
# Creates the namespace TEMPORAL_NAMESPACE and the registry's search attributes in it once Temporal
# answers, in the temporalio/admin-tools container of docker-compose.yml (the temporal CLI reads
# TEMPORAL_ADDRESS). Each step is skipped when already done: the script runs on every
# `docker compose up`.
set -eu

tries=0
ns=$TEMPORAL_NAMESPACE
until temporal operator cluster health >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "temporal-setup: Temporal at $TEMPORAL_ADDRESS is not healthy after 2 minutes" >&2
    exit 1
  fi
  sleep 2
done

temporal operator namespace describe --namespace "$ns" >/dev/null 2>&1 ||
  temporal operator namespace create --namespace "$ns"

# The registry upserts these on every stage change (README, "Search attributes").
existing=$(temporal operator search-attribute list --namespace "$ns")
for attr in ModelName:Keyword ModelVersion:Int ModelStage:Keyword; do
  name=${attr%%:*}
  if ! printf '%s\n' "$existing" | grep -qw "$name"; then
    temporal operator search-attribute create --namespace "$ns" --name "$name" --type "${attr#*:}"
  fi
done
echo "temporal-setup: namespace $ns with ModelName, ModelVersion and ModelStage"
