#!/usr/bin/env bash
# Deploys pgmcp to Azure Container Apps with the Azure CLI, for an existing PostgreSQL Flexible Server (seed 000's
# flow, without azd): infra/main.bicep creates the resource group, Log Analytics, pgmcp's managed identity, a
# registry, the Entra app registration (app roles MCP.Access/MCP.Write, service principal, federated credential)
# and the container app; the image is built from the Containerfile in the registry (az acr build) unless --image
# names one. Writes deployment-info.json and prints the one SQL step left for an Entra admin of the server.
#
#   ./scripts/deploy.sh --postgres-resource-id /subscriptions/…/flexibleServers/myserver --name pgmcp-dev
#     [--resource-group RG]        default rg-<name>
#     [--location LOCATION]        default: the server's
#     [--database DB]              default postgres
#     [--image REF]                a pushed pgmcp image instead of building one in the new registry
#     [--caller-principal-id OID]  (repeatable) service principal object id of a caller, e.g. an agent's managed
#                                  identity: gets the MCP.Access app role
#     [--allowed-client-app ID]    (repeatable) client id allowed to call; default: any holder of the role/scope
#     [--access-mode read_only|read_write] [--db-identity service|on_behalf_of]
#     [--output FILE]              default deployment-info.json
#
# Needs: az (signed in: az login; the Bicep CLI comes with it), jq. The signed-in account needs Contributor and
# User Access Administrator on the subscription and may create app registrations in Entra.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

postgres_id=""; name=""; resource_group=""; location=""; database=postgres; image=""
output="deployment-info.json"
access_mode=read_only; db_identity=service; callers=(); client_apps=()
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres-resource-id) postgres_id="$2"; shift ;;
    --name) name="$2"; shift ;;
    --resource-group) resource_group="$2"; shift ;;
    --location) location="$2"; shift ;;
    --database) database="$2"; shift ;;
    --image) image="$2"; shift ;;
    --caller-principal-id) callers+=("$2"); shift ;;
    --allowed-client-app) client_apps+=("$2"); shift ;;
    --access-mode) access_mode="$2"; shift ;;
    --db-identity) db_identity="$2"; shift ;;
    --output) output="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$postgres_id" ] || [ -z "$name" ]; then
  echo "usage: $0 --postgres-resource-id ID --name NAME [options] (see --help)" >&2
  exit 2
fi
case "$postgres_id" in
  /subscriptions/*/resourceGroups/*/providers/Microsoft.DBforPostgreSQL/flexibleServers/*) ;;
  *) echo "--postgres-resource-id must be a flexible server's id: /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.DBforPostgreSQL/flexibleServers/<name>" >&2; exit 2 ;;
esac
for tool in az jq; do
  command -v "$tool" >/dev/null || { echo "deploy: $tool is required" >&2; exit 2; }
done

step() { echo "==> $*"; }

step "Azure account"
account=$(az account show -o json) || { echo "deploy: not signed in — run az login" >&2; exit 1; }
echo "subscription $(jq -r .id <<<"$account") ($(jq -r .name <<<"$account")), tenant $(jq -r .tenantId <<<"$account")"

step "PostgreSQL server"
server=$(az postgres flexible-server show --ids "$postgres_id" -o json)
echo "$(jq -r .fullyQualifiedDomainName <<<"$server") in $(jq -r .location <<<"$server")"
if [ "$(jq -r '.authConfig.activeDirectoryAuth // "Disabled"' <<<"$server")" != Enabled ]; then
  echo "deploy: Microsoft Entra authentication is not enabled on $(jq -r .name <<<"$server"); enable it (portal:" \
    "Security → Authentication, or az postgres flexible-server update --microsoft-entra-auth Enabled) and add an" \
    "Entra administrator, then run this again" >&2
  exit 1
fi
# az shows the display name ("East US"); deployments take the programmatic one ("eastus").
[ -n "$location" ] || location=$(jq -r '.location | ascii_downcase | gsub(" "; "")' <<<"$server")

parameters=(
  environmentName="$name" location="$location" postgresServerResourceId="$postgres_id" databaseName="$database"
  accessMode="$access_mode" dbIdentity="$db_identity"
  callerPrincipalIds="$(jq -cn '$ARGS.positional' --args "${callers[@]}")"
  allowedClientApps="$(IFS=,; echo "${client_apps[*]}")"
)
[ -z "$resource_group" ] || parameters+=(resourceGroupName="$resource_group")

deploy() {
  az deployment sub create --name "pgmcp-$name" --location "$location" --template-file "$repo/infra/main.bicep" \
    --parameters "${parameters[@]}" "$@" -o json
}

if [ -n "$image" ]; then
  step "Infrastructure and pgmcp ($image)"
  deployment=$(deploy containerImage="$image" enableRegistry=false)
else
  step "Infrastructure (the app starts with a placeholder image)"
  deployment=$(deploy enableRegistry=true)
  registry=$(jq -r '.properties.outputs.AZURE_CONTAINER_REGISTRY_ENDPOINT.value' <<<"$deployment")
  tag="pgmcp:$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || date +%Y%m%d%H%M%S)"
  step "Building $tag in ${registry%%.*} from the Containerfile"
  az acr build --registry "${registry%%.*}" --image "$tag" --file "$repo/Containerfile" "$repo" --no-logs -o none
  step "pgmcp ($registry/$tag)"
  deployment=$(deploy containerImage="$registry/$tag" enableRegistry=true)
fi
state=$(jq -r '.properties.provisioningState' <<<"$deployment")
[ "$state" = Succeeded ] || { echo "deploy: the deployment ended $state" >&2; exit 1; }

outputs=$(jq '.properties.outputs | map_values(.value)' <<<"$deployment")
jq '{MCP_SERVER_URI, ENTRA_APP_CLIENT_ID, ENTRA_APP_OBJECT_ID, ENTRA_APP_SP_OBJECT_ID, ENTRA_APP_ROLE_VALUE,
     ENTRA_APP_ROLE_ID_BY_VALUE, ACA_MI_PRINCIPAL_ID, ACA_MI_DISPLAY_NAME, RESOURCE_GROUP, SUBSCRIPTION_ID,
     POSTGRES_SERVER_NAME, POSTGRES_RESOURCE_GROUP, LOCATION}' <<<"$outputs" >"$output"
step "Wrote $output"

# The same next steps azd prints after provisioning, with this deployment's values.
while IFS=$'\t' read -r key value; do export "$key=$value"; done < <(jq -r 'to_entries[] | [.key, .value] | @tsv' <<<"$outputs")
export AZURE_PGMCP_ACCESS_MODE="$access_mode"
"$repo/infra/hooks/postprovision.sh"
