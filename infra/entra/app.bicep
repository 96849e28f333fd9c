// pgmcp's Microsoft Entra app registration, through the Microsoft Graph Bicep extension (bicepconfig.json):
// the application with its Application ID URI and app roles MCP.Access and MCP.Write, an optional delegated scope
// for people, its service principal (role assignments fail without one), the federated identity credential that
// lets pgmcp's managed identity prove the app without a secret (on-behalf-of, seed 002), and MCP.Access for the
// callers' service principals (e.g. an agent's managed identity, seed 000).
//
// Kept in its own file: checkov's Bicep parser cannot read the `extension` statement, so scripts/ci-infra.sh
// checks every other file and only compiles this one when the Bicep CLI is present.

extension microsoftGraphV1

@description('Unique name of the application in the tenant (also the tail of the Application ID URI).')
param uniqueName string
param displayName string
@description('Principal (object) id of pgmcp\'s managed identity: the subject of the federated credential.')
param managedIdentityPrincipalId string
@description('Expose the delegated scope user_impersonation for people (VS Code, MCP Inspector, on-behalf-of).')
param exposeUserScope bool = true
@description('Service principal object ids (e.g. an agent\'s managed identity) that get the MCP.Access app role.')
param callerPrincipalIds array = []

// Fixed ids: a role's id must stay the same across deployments, or its assignments are lost.
var accessRoleId = guid(uniqueName, 'MCP.Access')
var writeRoleId = guid(uniqueName, 'MCP.Write')
var scopeId = guid(uniqueName, 'user_impersonation')
// api://{tenant}/{name} satisfies Entra's default identifier URI policy before the app id is known.
var appIdUri = 'api://${tenant().tenantId}/${uniqueName}'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    appIdUri
  ]
  api: {
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: exposeUserScope ? [
      {
        id: scopeId
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Use pgmcp as you'
        adminConsentDescription: 'Lets the application call pgmcp\'s MCP tools as the signed-in user.'
        userConsentDisplayName: 'Use pgmcp as you'
        userConsentDescription: 'Lets the application call pgmcp\'s MCP tools as you.'
      }
    ] : []
  }
  appRoles: [
    {
      id: accessRoleId
      value: 'MCP.Access'
      displayName: 'MCP.Access'
      description: 'Call pgmcp\'s read-only MCP tools.'
      allowedMemberTypes: [
        'Application'
        'User'
      ]
      isEnabled: true
    }
    {
      id: writeRoleId
      value: 'MCP.Write'
      displayName: 'MCP.Write'
      description: 'Call execute_write on read_write profiles.'
      allowedMemberTypes: [
        'Application'
        'User'
      ]
      isEnabled: true
    }
  ]

  resource managedIdentityCredential 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/pgmcp-managed-identity'
    description: 'pgmcp\'s managed identity proves the app registration (on-behalf-of without a secret).'
    issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    subject: managedIdentityPrincipalId
    audiences: [
      'api://AzureADTokenExchange'
    ]
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

resource callerAccess 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for caller in callerPrincipalIds: {
    appRoleId: accessRoleId
    principalId: caller
    resourceId: servicePrincipal.id
  }
]

output clientId string = app.appId
output objectId string = app.id
output servicePrincipalId string = servicePrincipal.id
output appIdUri string = appIdUri
output accessRoleValue string = 'MCP.Access'
output accessRoleId string = accessRoleId
output writeRoleId string = writeRoleId
