// pgmcp's user-assigned managed identity: created before the app registration (which trusts it as a federated
// credential) and the container app (which runs as it). Its display name is its PostgreSQL role.

param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
