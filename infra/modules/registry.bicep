// An optional Azure Container Registry for the pgmcp image; the container app pulls with its managed identity.

param name string
param location string
param tags object = {}
@description('Principal id of the identity that pulls images (AcrPull).')
param pullPrincipalId string

// AcrPull, a built-in role.
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139: the registry is reached over the public endpoint by azd/az acr build and by Container Apps without a VNet; pulls need Entra (admin user off, anonymous pull off).
  // checkov:skip=CKV_AZURE_163: image scanning is Microsoft Defender for Containers, enabled per subscription, not per registry.
  // checkov:skip=CKV_AZURE_166: image quarantine needs the Premium SKU and a scanner in the pipeline.
  // checkov:skip=CKV_AZURE_233: zone redundancy needs the Premium SKU; a lost registry is rebuilt from source.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
  }
}

resource pull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, pullPrincipalId, acrPullRoleId)
  scope: registry
  properties: {
    principalId: pullPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
