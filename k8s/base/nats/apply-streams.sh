#!/bin/sh
# Creates each stream defined in $STREAMS_DIR/*.json (file storage, 3 replicas), or updates it
# in place when it exists (for example at one replica, made by a service that started first).
set -eu

until nats --server "$NATS_URL" account info >/dev/null 2>&1; do
  echo "waiting for JetStream at $NATS_URL"
  sleep 2
done

for definition in "$STREAMS_DIR"/*.json; do
  name=$(basename "$definition" .json)
  if nats --server "$NATS_URL" stream info "$name" >/dev/null 2>&1; then
    nats --server "$NATS_URL" stream edit "$name" --config "$definition" --force
    echo "updated stream $name"
  else
    nats --server "$NATS_URL" stream add "$name" --config "$definition"
    echo "created stream $name"
  fi
done
