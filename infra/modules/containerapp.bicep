// The Container Apps environment and the pgmcp container app: runs as pgmcp's managed identity, ingress on 8080,
// /healthz liveness and /readyz readiness probes, and an HTTP scale rule between min and max replicas (pgmcp is
// stateless over HTTP, so replicas scale out). Configured only by PGMCP_* variables (README: Configuration).

param environmentName string
param appName string
param location string
param tags object = {}
param logAnalyticsWorkspaceName string
@description('Image reference; empty deploys a placeholder until azd or scripts/deploy.sh pushes pgmcp.')
param image string = ''
param registryLoginServer string = ''
param identityId string
param identityClientId string
@description('The identity\'s display name: its PostgreSQL role (pgmcp --db-user).')
param identityName string
param postgresHost string
param databaseName string
param entraClientId string
param entraAppIdUri string
param requiredRole string = 'MCP.Access'
@description('Delegated scope admitting people\'s tokens; empty admits app tokens with the role only.')
param requiredScope string = ''
@description('Client application ids allowed to call (comma-separated); empty: any holder of the role or scope.')
param allowedClientApps string = ''
@allowed([
  'read_only'
  'read_write'
])
param accessMode string = 'read_only'
@allowed([
  'service'
  'on_behalf_of'
])
@description('service: pgmcp logs in as its managed identity; on_behalf_of: as each signed-in caller (seed 002).')
param dbIdentity string = 'service'
@minValue(0)
param minReplicas int = 1
@minValue(1)
param maxReplicas int = 5
@description('Concurrent HTTP requests per replica before another replica starts.')
param concurrentRequests int = 50

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsWorkspaceName
}

resource containerEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
  }
}

var placeholder = empty(image)
// Container Apps' FQDN is the app's name under the environment's domain; the app cannot read its own ingress.
var publicUrl = 'https://${appName}.${containerEnv.properties.defaultDomain}'
var port = placeholder ? 80 : 8080

var baseEnv = [
  {
    name: 'PGMCP_PUBLIC_URL'
    value: publicUrl
  }
  {
    name: 'PGMCP_LOG_FORMAT'
    value: 'json'
  }
  {
    name: 'PGMCP_AUTH_MODE'
    value: 'entra'
  }
  {
    name: 'PGMCP_ENTRA_TENANT_ID'
    value: tenant().tenantId
  }
  {
    name: 'PGMCP_ENTRA_CLIENT_ID'
    value: entraClientId
  }
  {
    name: 'PGMCP_ENTRA_APP_ID_URI'
    value: entraAppIdUri
  }
  {
    name: 'PGMCP_REQUIRED_ROLE'
    value: requiredRole
  }
  {
    name: 'DATABASE_URL'
    value: 'postgresql://${postgresHost}/${databaseName}'
  }
  {
    name: 'PGMCP_ACCESS_MODE'
    value: accessMode
  }
  {
    name: 'PGMCP_DB_AUTH'
    value: 'entra'
  }
  {
    name: 'PGMCP_ENTRA_CREDENTIAL'
    value: 'managed_identity'
  }
  {
    name: 'PGMCP_MANAGED_IDENTITY_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'PGMCP_DB_USER'
    value: identityName
  }
  {
    name: 'PGMCP_DB_IDENTITY'
    value: dbIdentity
  }
]
var scopeEnv = empty(requiredScope) ? [] : [
  {
    name: 'PGMCP_REQUIRED_SCOPE'
    value: requiredScope
  }
]
var clientAppEnv = empty(allowedClientApps) ? [] : [
  {
    name: 'PGMCP_ALLOWED_CLIENT_APP'
    value: allowedClientApps
  }
]
// On-behalf-of: the app registration that exchanges callers' tokens; the managed identity proves it (federated
// credential), so no secret is set.
var oboEnv = dbIdentity == 'on_behalf_of' ? [
  {
    name: 'AZURE_TENANT_ID'
    value: tenant().tenantId
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: entraClientId
  }
] : []

var probes = placeholder ? [] : [
  {
    type: 'Liveness'
    httpGet: {
      path: '/healthz'
      port: 8080
    }
    periodSeconds: 10
    failureThreshold: 3
  }
  {
    type: 'Readiness'
    httpGet: {
      path: '/readyz'
      port: 8080
    }
    periodSeconds: 10
    failureThreshold: 3
  }
]

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'pgmcp'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: containerEnv.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: port
        transport: 'http'
        allowInsecure: false
      }
      registries: empty(registryLoginServer) ? [] : [
        {
          server: registryLoginServer
          identity: identityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'pgmcp'
          image: placeholder ? 'mcr.microsoft.com/k8se/quickstart:latest' : image
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(baseEnv, scopeEnv, clientAppEnv, oboEnv)
          probes: probes
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-requests'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

output name string = app.name
output fqdn string = app.properties.configuration.ingress.fqdn
output uri string = publicUrl
