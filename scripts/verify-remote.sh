#!/usr/bin/env bash
# Checks a deployed pgmcp the way an agent calls it (seed 000, step 4): gets a token for pgmcp's app registration,
# lists the tools and runs one query, and says what failed and why — 401 with the server's challenge, 403 with the
# role the token lacks, database errors with their SQLSTATE. Run it from anywhere that can get a token: a Container
# Instance, VM or Container App with a managed identity, or a shell signed in with `az login`.
#
#   ./scripts/verify-remote.sh                        reads deployment-info.json (from scripts/deploy.sh)
#   ./scripts/verify-remote.sh --info path/to/deployment-info.json
#   MCP_SERVER_URI=https://…/mcp ENTRA_APP_CLIENT_ID=<client id> ./scripts/verify-remote.sh
#   ./scripts/verify-remote.sh --token "$ACCESS_TOKEN"      a token you already have
#   --source imds|identity-endpoint|az               where the token comes from (default: the first that exists)
#   --sql 'SELECT 1'                                  the query to run (default: who and where pgmcp is)
#
# Token sources: IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service, Container Apps, Functions), else the Azure
# Instance Metadata Service (VMs, Container Instances; PGMCP_IMDS_ENDPOINT replaces its address, as for pgmcp),
# else the Azure CLI. Needs curl and jq. Exit status: 0 when both calls succeeded.
set -euo pipefail

info=deployment-info.json; token="${ACCESS_TOKEN:-}"; source=""
sql="SELECT current_user AS login, current_database() AS database, version() AS server"
while [ $# -gt 0 ]; do
  case "$1" in
    --info) info="$2"; shift ;;
    --token) token="$2"; shift ;;
    --source) source="$2"; shift ;;
    --sql) sql="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "verify-remote: $tool is required" >&2; exit 2; }
done

uri="${MCP_SERVER_URI:-}"; app="${ENTRA_APP_CLIENT_ID:-}"
# Read once: --info may be a pipe, e.g. <(azd env get-values --output json).
if [ -e "$info" ]; then
  values=$(cat "$info")
  [ -n "$uri" ] || uri=$(jq -r '.MCP_SERVER_URI // empty' <<<"$values")
  [ -n "$app" ] || app=$(jq -r '.ENTRA_APP_CLIENT_ID // empty' <<<"$values")
  role=$(jq -r '.ENTRA_APP_ROLE_VALUE // empty' <<<"$values")
fi
role="${role:-MCP.Access}"
[ -n "$uri" ] || { echo "verify-remote: no MCP_SERVER_URI (set it, or pass --info deployment-info.json)" >&2; exit 2; }

fail() { echo "FAILED: $*" >&2; exit 1; }

# A token for pgmcp's app from a managed identity endpoint: prints it, or explains the endpoint's refusal.
token_from_endpoint() {
  local url="$1" header="$2" body status
  body=$(mktemp)
  status=$(curl -sS -o "$body" -w '%{http_code}' --max-time 10 -G "$url" --data-urlencode "resource=$app" \
    -H "$header") || { rm -f "$body"; fail "the managed identity endpoint ${url%%\?*} did not answer"; }
  if [ "$status" != 200 ]; then
    echo "FAILED: the managed identity endpoint answered $status: $(jq -r '[.error, .error_description] | map(select(.)) | join(": ")' "$body" 2>/dev/null || cat "$body")" >&2
    rm -f "$body"
    echo "  Is ENTRA_APP_CLIENT_ID ($app) pgmcp's app registration, and does this resource have a managed identity?" >&2
    exit 1
  fi
  jq -r '.access_token' "$body"
  rm -f "$body"
}

if [ -z "$token" ]; then
  [ -n "$app" ] || fail "no ENTRA_APP_CLIENT_ID to get a token for (set it, or pass --info deployment-info.json)"
  imds="${PGMCP_IMDS_ENDPOINT:-http://169.254.169.254/metadata/identity/oauth2/token}"
  if [ -z "$source" ]; then
    if [ -n "${IDENTITY_ENDPOINT:-}" ] && [ -n "${IDENTITY_HEADER:-}" ]; then source=identity-endpoint
    elif curl -s -o /dev/null --max-time 2 -H 'Metadata: true' "$imds?api-version=2018-02-01"; then source=imds
    elif command -v az >/dev/null; then source=az
    else fail "no token source: no managed identity endpoint answers here and the Azure CLI is not installed (or pass --token)"
    fi
  fi
  case "$source" in
    identity-endpoint)
      if [ -z "${IDENTITY_ENDPOINT:-}" ] || [ -z "${IDENTITY_HEADER:-}" ]; then
        fail "IDENTITY_ENDPOINT and IDENTITY_HEADER are not set here"
      fi
      token=$(token_from_endpoint "$IDENTITY_ENDPOINT?api-version=2019-08-01" "X-IDENTITY-HEADER: $IDENTITY_HEADER") ;;
    imds) token=$(token_from_endpoint "$imds?api-version=2018-02-01" "Metadata: true") ;;
    az) token=$(az account get-access-token --resource "$app" --query accessToken -o tsv) \
          || fail "az could not get a token for $app (az login; is it pgmcp's app registration?)" ;;
    *) echo "unknown --source $source (imds, identity-endpoint, az)" >&2; exit 2 ;;
  esac
  echo "token: from $source, for $app"
fi

# The token's claims (never the token): who is calling, and with which roles.
claims() {
  local payload
  payload=$(printf '%s' "$token" | cut -d. -f2 | tr '_-' '/+')
  while [ $(( ${#payload} % 4 )) -ne 0 ]; do payload="$payload="; done
  printf '%s' "$payload" | base64 -d 2>/dev/null || true
}
echo "caller: $(claims | jq -c '{aud, oid, azp: (.azp // .appid), roles: (.roles // []), scp}' 2>/dev/null || echo 'token is not a JWT')"

# One JSON-RPC call; sets $status, $challenge and $answer (the JSON-RPC object).
call() {
  local headers body
  headers=$(mktemp); body=$(mktemp)
  status=$(curl -sS -o "$body" -D "$headers" -w '%{http_code}' --max-time 60 -X POST "$uri" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H "Authorization: Bearer $token" -d "$1") || { rm -f "$headers" "$body"; fail "$uri did not answer"; }
  challenge=$(grep -i '^www-authenticate:' "$headers" | cut -d: -f2- | tr -d '\r' | sed 's/^ //' || true)
  # Streamable HTTP answers with JSON or with an event stream whose data line holds it.
  answer=$(sed -n 's/^data: *//p' "$body" | head -n 1)
  [ -n "$answer" ] || answer=$(cat "$body")
  rm -f "$headers" "$body"
}

explain_refusal() {
  case "$status" in
    401) echo "FAILED: 401 Unauthorized — pgmcp did not accept the token." >&2
         echo "  challenge: ${challenge:-none}" >&2
         echo "  The token must be for pgmcp's app (aud = its client id or Application ID URI), from its tenant, unexpired." >&2 ;;
    403) echo "FAILED: 403 Forbidden — the token is valid but lacks what pgmcp requires." >&2
         echo "  challenge: ${challenge:-none}" >&2
         echo "  token roles: $(claims | jq -c '.roles // []' 2>/dev/null); pgmcp requires the app role $role." >&2
         echo "  Assign it to the caller's service principal (docs/deploy-azure.md, step 4), or list the caller's client id in PGMCP_ALLOWED_CLIENT_APP." >&2 ;;
    *) echo "FAILED: HTTP $status from $uri: $answer" >&2 ;;
  esac
  exit 1
}

call '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
[ "$status" = 200 ] || explain_refusal
tools=$(jq -r '.result.tools[]?.name' <<<"$answer" 2>/dev/null || true)
[ -n "$tools" ] || fail "tools/list returned no tools: $answer"
echo "tools/list: $(echo "$tools" | paste -sd' ')"

request=$(jq -cn --arg sql "$sql" '{jsonrpc: "2.0", id: 2, method: "tools/call",
  params: {name: "execute_query", arguments: {sql: $sql}}}')
call "$request"
[ "$status" = 200 ] || explain_refusal
# A failed call: a JSON-RPC error (e.g. pgmcp could not log in to PostgreSQL) or a tool error result.
problem=""
if jq -e '.error' <<<"$answer" >/dev/null 2>&1; then
  problem=$(jq -r '.error.message' <<<"$answer")
elif [ "$(jq -r '.result.isError // false' <<<"$answer")" = true ]; then
  problem=$(jq -r '.result.content[0].text // empty' <<<"$answer")
fi
if [ -n "$problem" ]; then
  echo "FAILED: execute_query: $problem" >&2
  sqlstate=$(jq -r '.sqlstate // empty' <<<"$problem" 2>/dev/null || grep -oE '\b(28000|28P01|42501|3D000)\b' <<<"$problem" | head -n 1 || true)
  case "$sqlstate" in
    28000|28P01) echo "  PostgreSQL refused pgmcp's login: create its role with \`pgmcp azure grant\` (docs/deploy-azure.md, scenario 1 step 3)." >&2 ;;
    42501) echo "  pgmcp's role lacks a privilege: run the grants \`pgmcp azure grant\` prints." >&2 ;;
    3D000) echo "  The database in DATABASE_URL does not exist on the server." >&2 ;;
  esac
  exit 1
fi
text=$(jq -r '.result.content[0].text // empty' <<<"$answer")
echo "execute_query: $(jq -c '{columns: [.columns[].name], rows}' <<<"$text" 2>/dev/null || echo "$text")"
echo "OK: $uri answers with tools and rows"
