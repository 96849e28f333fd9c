#!/bin/sh
# azd preprovision: a new PostgreSQL server needs its Entra administrator's name besides the id azd passes;
# take the signed-in user's when none is set. Nothing to do when an existing server is used.
set -eu
if [ -z "${POSTGRES_SERVER_RESOURCE_ID:-}" ] && [ -z "${AZURE_PRINCIPAL_NAME:-}" ]; then
  name=$(az ad signed-in-user show --query userPrincipalName -o tsv)
  azd env set AZURE_PRINCIPAL_NAME "$name"
  echo "the new PostgreSQL server's Entra administrator: $name"
fi
