// A real OpenID provider on loopback for pgmcp's authentication tests (npm `oidc-provider`).
//
// It issues RS256/PS256/ES256 JWT access tokens by client credentials. Each client carries the claim shape of
// one test scenario (Entra v1 or v2 app-only tokens, delegated tokens with `scp`, expired tokens, ...), so the
// tokens are signed by the provider itself, exactly like a production identity provider would sign them.
//
// Configuration: JSON in the environment variable PGMCP_OIDC_CONFIG:
//   { "clients": [ { "client_id", "client_secret", "alg"?: "RS256"|"PS256"|"ES256",
//                    "claims"?: {..}, "exp_offset"?: seconds, "nbf_offset"?: seconds, "header"?: {..},
//                    "token_endpoint_auth_method"?: "client_secret_basic"|"client_secret_post" } ],
//     "scope"?: "space separated scopes the resource server offers",
//     "accounts"?: { "<login>": {claims added to that person's access tokens} } }
// A client with "certificates" (PEMs) authenticates with `private_key_jwt` as Entra's certificate credentials do: a
// PS256 client assertion whose header names one of those certificates by its SHA-256 thumbprint (`x5t#S256`); any
// other key or thumbprint is refused. Such a client has no secret.
// A client with "redirect_uris" also signs people in by authorization code: the login page at
// /interaction/{uid} is a plain form (field `login`, one of the accounts) that signs in and consents at once, as
// a browser-driving test would complete it.
// String claim values may contain `{base}`, replaced with this provider's base URL (http://127.0.0.1:PORT), so a
// test can shape Entra issuers (`{base}/{tid}/v2.0`, `{base}/{tid}/`) before it knows the port.
//
// Besides the provider's own endpoints it serves:
//   GET  /{tenant}/discovery/v2.0/keys   the public JWKS at Entra's path (any tenant)
//   POST /admin/rotate                   new signing keys; the old ones stay published (like Entra's rollover)
//   GET  /admin/stats                    {"jwks_requests": n} — how often a relying party fetched keys
// On start it prints one line to stdout: {"ready":true,"port":N,"issuer":"http://127.0.0.1:N"}.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(process.env.PGMCP_OIDC_CONFIG || '{"clients":[]}');
const clientsById = new Map(config.clients.map((client) => [client.client_id, client]));
const resourceScope = config.scope || 'mcp.access';
const accounts = config.accounts || {};

let generation = 0;
let signingKeys = [];
let jwksRequests = 0;

function newKeys() {
  generation += 1;
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  // No `alg` on the keys, like Entra's JWKS: the RSA key serves RS256 and PS256.
  return [
    { ...rsa, kid: `rsa-${generation}-${crypto.randomUUID()}`, use: 'sig' },
    { ...ec, kid: `ec-${generation}-${crypto.randomUUID()}`, use: 'sig' },
  ];
}

function publicJwks() {
  return {
    keys: signingKeys.map((key) => {
      const pub = crypto.createPublicKey({ key, format: 'jwk' }).export({ format: 'jwk' });
      return { ...pub, kid: key.kid, use: 'sig' };
    }),
  };
}

function fillBase(value, base) {
  if (typeof value === 'string') return value.replaceAll('{base}', base);
  if (Array.isArray(value)) return value.map((item) => fillBase(item, base));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillBase(v, base)]));
  }
  return value;
}

// The public key of a client's certificate as a JWK with its chain, and the certificate's thumbprint.
function certificateJwk(pem) {
  const certificate = new crypto.X509Certificate(pem);
  const jwk = certificate.publicKey.export({ format: 'jwk' });
  return {
    ...jwk,
    use: 'sig',
    x5c: [certificate.raw.toString('base64')],
    'x5t#S256': crypto.createHash('sha256').update(certificate.raw).digest('base64url'),
  };
}

function clientMetadata(client) {
  const metadata = {
    client_id: client.client_id,
    grant_types: client.redirect_uris ? ['authorization_code', 'client_credentials'] : ['client_credentials'],
    response_types: client.redirect_uris ? ['code'] : [],
    redirect_uris: client.redirect_uris || [],
    token_endpoint_auth_method: client.token_endpoint_auth_method || 'client_secret_basic',
    scope: client.scope || resourceScope,
  };
  if (client.certificates) {
    metadata.token_endpoint_auth_method = 'private_key_jwt';
    metadata.token_endpoint_auth_signing_alg = 'PS256';
    metadata.jwks = { keys: client.certificates.map(certificateJwk) };
  } else {
    metadata.client_secret = client.client_secret;
  }
  return metadata;
}

// Entra identifies the certificate of an assertion by its thumbprint: the header must name the registered one.
async function assertCertificateHeader(_ctx, _claims, header, client) {
  const registered = (client.jwks?.keys || []).map((key) => key['x5t#S256']).filter(Boolean);
  if (registered.length > 0 && !registered.includes(header['x5t#S256'])) {
    throw new errors.InvalidClientAuth('x5t#S256 does not name a registered certificate');
  }
}

function buildProvider(base) {
  const provider = new Provider(base, {
    clients: config.clients.map(clientMetadata),
    assertJwtClientAuthClaimsAndHeader: assertCertificateHeader,
    scopes: ['openid', ...resourceScope.split(' ')],
    jwks: { keys: signingKeys },
    findAccount: (_ctx, id) => (accounts[id] ? { accountId: id, claims: () => ({ sub: id }) } : undefined),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'api://pgmcp-default',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, _resource, client) => ({
          scope: resourceScope,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: clientsById.get(client.clientId)?.alg || 'RS256' } },
        }),
      },
    },
    formats: {
      customizers: {
        // The scenario's claims win over the provider's defaults: that is how one provider mints Entra-shaped
        // tokens for several issuers, tenants and token versions.
        jwt: (_ctx, token, jwt) => {
          const scenario = clientsById.get(token.clientId);
          if (!scenario) return;
          Object.assign(jwt.payload, fillBase(scenario.claims || {}, base));
          if (token.accountId && accounts[token.accountId]) Object.assign(jwt.payload, accounts[token.accountId]);
          for (const [name, value] of Object.entries(jwt.payload)) {
            if (value === null) delete jwt.payload[name];
          }
          const now = Math.floor(Date.now() / 1000);
          if (typeof scenario.exp_offset === 'number') jwt.payload.exp = now + scenario.exp_offset;
          if (typeof scenario.nbf_offset === 'number') jwt.payload.nbf = now + scenario.nbf_offset;
          if (scenario.header) jwt.header = { ...jwt.header, ...fillBase(scenario.header, base) };
        },
      },
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('provider error:', err));
  return provider;
}

signingKeys = newKeys();
let provider;
let handler;

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function readForm(req) {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(new URLSearchParams(body)));
  });
}

// The sign-in page: one form that names the account; submitting it signs in and grants what was asked.
async function interaction(req, res, uid, submit) {
  const details = await provider.interactionDetails(req, res);
  if (!submit) {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!-- ${details.prompt.name} ${JSON.stringify(details.prompt.reasons)} --><form method="post" action="/interaction/${uid}/login"><input name="login"><button>Sign in</button></form>`);
    return;
  }
  const login = (await readForm(req)).get('login');
  if (!accounts[login]) {
    res.writeHead(403, { 'content-type': 'text/plain' });
    res.end('unknown account');
    return;
  }
  const { params } = details;
  const grant = new provider.Grant({ accountId: login, clientId: params.client_id });
  // Everything asked for is granted: the resource's scopes are also OpenID scopes of this provider.
  const scopes = String(params.scope || '');
  grant.addOIDCScope(scopes);
  const resourceScopes = scopes.split(' ').filter((s) => resourceScope.split(' ').includes(s)).join(' ');
  if (params.resource) grant.addResourceScope(params.resource, resourceScopes);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId: login }, consent: { grantId } });
}

const server = http.createServer((req, res) => {
  const path = (req.url || '/').split('?')[0];
  const signIn = path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (signIn) {
    interaction(req, res, signIn[1], req.method === 'POST').catch((err) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
    return;
  }
  if (req.method === 'GET' && (path === '/jwks' || /^\/[^/]+\/discovery\/v2\.0\/keys$/.test(path))) {
    jwksRequests += 1;
    send(res, 200, publicJwks());
    return;
  }
  if (req.method === 'POST' && path === '/admin/rotate') {
    signingKeys = [...newKeys(), ...signingKeys];
    provider = buildProvider(provider.issuer);
    handler = provider.callback();
    send(res, 200, { kids: signingKeys.map((key) => key.kid) });
    return;
  }
  if (req.method === 'GET' && path === '/admin/stats') {
    send(res, 200, { jwks_requests: jwksRequests, kids: signingKeys.map((key) => key.kid) });
    return;
  }
  handler(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const base = `http://127.0.0.1:${port}`;
  provider = buildProvider(base);
  handler = provider.callback();
  process.stdout.write(`${JSON.stringify({ ready: true, port, issuer: base })}\n`);
});

// The test harness kills the process; closing stdin (parent gone) also ends it so no provider outlives a test.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
