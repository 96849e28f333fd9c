// Log Analytics: where the Container Apps environment sends pgmcp's stderr (JSON lines with PGMCP_LOG_FORMAT=json).

param name string
param location string
param tags object = {}
@minValue(30)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
  }
}

output id string = workspace.id
output name string = workspace.name
