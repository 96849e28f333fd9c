// An existing flexible server, deployed at its own resource group's scope: only its host name and location are
// read. Entra authentication must be enabled on it (docs/deploy-azure.md says how).

param name string

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' existing = {
  name: name
}

output name string = server.name
output fqdn string = server.properties.fullyQualifiedDomainName
output location string = server.location
