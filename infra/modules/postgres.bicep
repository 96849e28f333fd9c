// A new Azure Database for PostgreSQL Flexible Server with Microsoft Entra authentication only (no passwords),
// the deploying user as its Entra administrator, and the database pgmcp serves. The administrator then runs
// `pgmcp azure grant` to create pgmcp's role (docs/deploy-azure.md).

param name string
param location string
param tags object = {}
param databaseName string
@description('Entra administrator: object id, name (UPN or display name) and type.')
param adminPrincipalId string
param adminPrincipalName string
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param adminPrincipalType string = 'User'
param version string = '16'
param skuName string = 'Standard_B1ms'
param skuTier string = 'Burstable'

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: version
    storage: {
      storageSizeGB: 32
    }
    backup: {
      backupRetentionDays: 7
      // Geo-redundant backups cost more; production data may want 'Enabled' (set at creation only).
      geoRedundantBackup: 'Disabled'
    }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: tenant().tenantId
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource admin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: adminPrincipalId
  properties: {
    principalName: adminPrincipalName
    principalType: adminPrincipalType
    tenantId: tenant().tenantId
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// Container Apps without a VNet reach the server from Azure's outbound addresses: the 0.0.0.0 rule admits
// connections from Azure services only. Logins still need an Entra token for an existing role, over TLS.
resource azureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: server
  name: 'AllowAzureServices'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [
    admin
  ]
}

output name string = server.name
output fqdn string = server.properties.fullyQualifiedDomainName
