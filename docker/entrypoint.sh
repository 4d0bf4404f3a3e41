#!/usr/bin/env bash
# Container entrypoint: `launch.py` with the arguments given, plus this container's place in a multi-host
# world when the DHMAML_* variables describe one (docker/compose.yaml sets them per service).
#
#   DHMAML_NNODES        containers taking part (each one is a "host" to launch.py)
#   DHMAML_NODE_RANK     this container's index; 0 runs the agent
#   DHMAML_MASTER_ADDR   name or address of the container with rank 0
#   DHMAML_MASTER_PORT   its rendezvous port (default 29500)
#   DHMAML_INTERFACE     interface TensorPipe listens on (default eth0, the compose network)
#   DHMAML_TRUST_NETWORK 1 to listen beyond loopback: every container on that network is trusted
set -euo pipefail
args=("$@")
if [[ -n ${DHMAML_NNODES:-} && ${1:-} == train ]]; then
    args+=(--nnodes "$DHMAML_NNODES" --node-rank "${DHMAML_NODE_RANK:?DHMAML_NODE_RANK is required with DHMAML_NNODES}"
           --master-addr "${DHMAML_MASTER_ADDR:?DHMAML_MASTER_ADDR is required with DHMAML_NNODES}"
           --master-port "${DHMAML_MASTER_PORT:-29500}" --interface "${DHMAML_INTERFACE:-eth0}")
    if [[ ${DHMAML_TRUST_NETWORK:-0} == 1 ]]; then
        args+=(--trust-network)
    fi
fi
exec python "$(dirname "$(readlink -f "$0")")/../launch.py" "${args[@]}"
