// pgmcp on Azure Container Apps (seed 000; seed 002 with dbIdentity = on_behalf_of): `azd up` from the
// repository root, or scripts/deploy.sh with az. Creates the resource group, Log Analytics, pgmcp's managed
// identity, an optional registry, the Entra app registration (entra/app.bicep), a new PostgreSQL Flexible Server
// with Entra authentication or uses an existing one, and the container app wired to all of them. Outputs are
// named like the keys of deployment-info.json.

targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the deployment (azd environment name); resource names derive from it.')
param environmentName string
@minLength(1)
param location string
@description('Resource group to create or reuse; default rg-<environmentName>.')
param resourceGroupName string = ''
@description('Resource id of an existing PostgreSQL Flexible Server; empty creates a new one.')
param postgresServerResourceId string = ''
param databaseName string = 'postgres'
@description('Entra administrator of a new server (azd passes the signed-in user).')
param principalId string = ''
param principalName string = ''
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'
@description('pgmcp image; empty deploys a placeholder that azd deploy (or scripts/deploy.sh) replaces.')
param containerImage string = ''
@description('Create an Azure Container Registry that the app pulls from with its managed identity.')
param enableRegistry bool = true
@allowed([
  'read_only'
  'read_write'
])
param accessMode string = 'read_only'
@allowed([
  'service'
  'on_behalf_of'
])
param dbIdentity string = 'service'
@description('Expose the delegated scope user_impersonation and accept people\'s tokens carrying it.')
param exposeUserScope bool = true
@description('Client application ids allowed to call pgmcp (comma-separated); empty: any caller with the role or scope.')
param allowedClientApps string = ''
@description('Service principal object ids (e.g. an agent\'s managed identity) that get the MCP.Access app role.')
param callerPrincipalIds array = []
@minValue(0)
param minReplicas int = 1
@minValue(1)
param maxReplicas int = 5

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var useExistingPostgres = !empty(postgresServerResourceId)
// Padded when empty, so that indexing stays valid in expressions ARM evaluates even for skipped modules.
var existingParts = split(useExistingPostgres ? postgresServerResourceId : '/subscriptions/-/resourceGroups/-/providers/-/-/-', '/')
var appName = take(toLower('ca-${environmentName}'), 32)
var identityName = 'id-pgmcp-${environmentName}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    name: 'log-${token}'
    location: location
    tags: tags
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

module registry 'modules/registry.bicep' = if (enableRegistry) {
  name: 'registry'
  scope: rg
  params: {
    name: 'cr${token}'
    location: location
    tags: tags
    pullPrincipalId: identity.outputs.principalId
  }
}

module entra 'entra/app.bicep' = {
  name: 'entra'
  scope: rg
  params: {
    uniqueName: 'pgmcp-${environmentName}-${token}'
    displayName: 'pgmcp (${environmentName})'
    managedIdentityPrincipalId: identity.outputs.principalId
    exposeUserScope: exposeUserScope
    callerPrincipalIds: callerPrincipalIds
  }
}

module newPostgres 'modules/postgres.bicep' = if (!useExistingPostgres) {
  name: 'postgres'
  scope: rg
  params: {
    name: 'psql-${token}'
    location: location
    tags: tags
    databaseName: databaseName
    adminPrincipalId: principalId
    adminPrincipalName: principalName
    adminPrincipalType: principalType
  }
}

module existingPostgres 'modules/postgres-existing.bicep' = if (useExistingPostgres) {
  name: 'postgres-existing'
  scope: resourceGroup(existingParts[2], existingParts[4])
  params: {
    name: last(existingParts)
  }
}

module app 'modules/containerapp.bicep' = {
  name: 'containerapp'
  scope: rg
  params: {
    environmentName: 'cae-${token}'
    appName: appName
    location: location
    tags: tags
    logAnalyticsWorkspaceName: monitoring.outputs.name
    image: containerImage
    registryLoginServer: enableRegistry ? registry.outputs.loginServer : ''
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    identityName: identity.outputs.name
    postgresHost: useExistingPostgres ? existingPostgres.outputs.fqdn : newPostgres.outputs.fqdn
    databaseName: databaseName
    entraClientId: entra.outputs.clientId
    entraAppIdUri: entra.outputs.appIdUri
    requiredScope: exposeUserScope ? 'user_impersonation' : ''
    allowedClientApps: allowedClientApps
    accessMode: accessMode
    dbIdentity: dbIdentity
    minReplicas: minReplicas
    maxReplicas: maxReplicas
  }
}

output MCP_SERVER_URI string = '${app.outputs.uri}/mcp'
output ENTRA_APP_CLIENT_ID string = entra.outputs.clientId
output ENTRA_APP_OBJECT_ID string = entra.outputs.objectId
output ENTRA_APP_SP_OBJECT_ID string = entra.outputs.servicePrincipalId
output ENTRA_APP_ID_URI string = entra.outputs.appIdUri
output ENTRA_APP_ROLE_VALUE string = entra.outputs.accessRoleValue
output ENTRA_APP_ROLE_ID_BY_VALUE string = entra.outputs.accessRoleId
output ACA_MI_PRINCIPAL_ID string = identity.outputs.principalId
output ACA_MI_CLIENT_ID string = identity.outputs.clientId
output ACA_MI_DISPLAY_NAME string = identity.outputs.name
output RESOURCE_GROUP string = rg.name
output SUBSCRIPTION_ID string = subscription().subscriptionId
output POSTGRES_SERVER_NAME string = useExistingPostgres ? existingPostgres.outputs.name : newPostgres.outputs.name
output POSTGRES_RESOURCE_GROUP string = useExistingPostgres ? existingParts[4] : rg.name
output POSTGRES_HOST string = useExistingPostgres ? existingPostgres.outputs.fqdn : newPostgres.outputs.fqdn
output POSTGRES_DATABASE string = databaseName
output LOCATION string = location
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = enableRegistry ? registry.outputs.loginServer : ''
output SERVICE_PGMCP_NAME string = app.outputs.name
