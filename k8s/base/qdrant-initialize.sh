#!/bin/bash
# Start one Qdrant peer of the StatefulSet `qdrant`: pod 0 founds the cluster, every other pod
# bootstraps from pod 0. Peers talk on the p2p port 6335 through the headless service.
set -euo pipefail
ordinal="${HOSTNAME##*-}"
self="http://${HOSTNAME}.qdrant-headless:6335"
if [ "$ordinal" = "0" ]; then
  exec ./qdrant --uri "$self"
fi
exec ./qdrant --bootstrap "http://qdrant-0.qdrant-headless:6335" --uri "$self"
