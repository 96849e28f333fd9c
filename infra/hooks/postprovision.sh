#!/bin/sh
# azd postprovision: what is left after provisioning, with this environment's values filled in — the one SQL step
# an Entra administrator of the server runs (pgmcp's role and grants), and the check from a caller.
set -eu
cat <<INFO

pgmcp: ${MCP_SERVER_URI}
Entra app: client id ${ENTRA_APP_CLIENT_ID}, Application ID URI ${ENTRA_APP_ID_URI}, app role ${ENTRA_APP_ROLE_VALUE}

Give pgmcp's managed identity its PostgreSQL role, once, as an Entra administrator of ${POSTGRES_HOST}:

  pgmcp azure grant --name '${ACA_MI_DISPLAY_NAME}' --object-id ${ACA_MI_PRINCIPAL_ID} \\
    --database '${POSTGRES_DATABASE}' --access-mode ${AZURE_PGMCP_ACCESS_MODE:-read_only} --server ${POSTGRES_HOST} \\
    | PGPASSWORD="\$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)" \\
      psql "host=${POSTGRES_HOST} dbname=postgres user=<your Entra admin name> sslmode=require"

Then check it from a caller that has the ${ENTRA_APP_ROLE_VALUE} role (docs/deploy-azure.md):

  MCP_SERVER_URI=${MCP_SERVER_URI} ENTRA_APP_CLIENT_ID=${ENTRA_APP_CLIENT_ID} ./scripts/verify-remote.sh
INFO
