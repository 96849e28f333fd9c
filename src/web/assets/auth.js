// Explaining a refused request in plain words: the WWW-Authenticate challenge (RFC 6750, MCP authorization) and the
// protected resource metadata (RFC 9728) it points to.

import { h } from './dom.js';

/** The auth-params of a `Bearer` challenge: `Bearer a="x", b="y"` → { a: 'x', b: 'y' }. */
export function parseChallenge(header) {
  const params = {};
  if (!header) return params;
  const rest = header.replace(/^\s*Bearer\s*/i, '');
  const pattern = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;
  for (const match of rest.matchAll(pattern)) {
    params[match[1].toLowerCase()] = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : match[3];
  }
  return params;
}

/** Fetches the protected resource metadata a challenge names; null when it cannot be read. */
export async function fetchMetadata(url) {
  if (!url) return null;
  try {
    const response = await fetch(url, { credentials: 'omit', cache: 'no-store' });
    if (!response.ok) return null;
    return await response.json();
  } catch {
    // Another origin is out of reach under the page's Content-Security-Policy; the challenge still explains.
    return null;
  }
}

function headline(status, challenge, hadToken) {
  if (status === 403) {
    return {
      title: 'Your token is valid, but it does not grant access to this server',
      detail:
        'pgmcp accepted who you are but the token lacks the required app role or scope. Ask an administrator to ' +
        'assign the role to your account or application, then get a new token.',
    };
  }
  if (status === 400) {
    return {
      title: 'The request was refused as malformed',
      detail: 'Send the token only in the Authorization header, once, with the Bearer scheme.',
    };
  }
  if (!hadToken || !challenge.error) {
    return {
      title: 'This server needs an access token',
      detail:
        'pgmcp is protected: every request to /mcp must carry a bearer token from the identity provider below. ' +
        'Paste one into the token field and connect again.',
    };
  }
  return {
    title: 'The server rejected your token',
    detail:
      (challenge.error_description ? `${challenge.error_description}. ` : '') +
      'It may have expired, be meant for another application (audience), come from another tenant or issuer, ' +
      'or be signed with a key the server does not trust. Get a fresh token for the resource below.',
  };
}

/** How to get a token with the Azure CLI for the scope the server asks for, when it looks like Entra's. */
function tokenCommand(scope) {
  if (!scope) return null;
  const first = scope.split(/\s+/)[0];
  return `az account get-access-token --scope "${first}" --query accessToken -o tsv`;
}

/**
 * An element explaining a refused request.
 * @param {import('./mcp.js').HttpError} error
 * @param {boolean} hadToken whether a token was sent
 */
export async function explainRefusal(error, hadToken) {
  const challenge = parseChallenge(error.wwwAuthenticate);
  const metadata = await fetchMetadata(challenge.resource_metadata);
  const { title, detail } = headline(error.status, challenge, hadToken);
  const facts = [];
  const fact = (term, ...value) => facts.push(h('dt', {}, term), h('dd', {}, ...value));
  fact('HTTP status', String(error.status));
  if (challenge.error) fact('Error', h('code', {}, challenge.error));
  if (metadata?.resource) fact('Resource', h('code', {}, metadata.resource));
  const servers = metadata?.authorization_servers || [];
  if (servers.length) {
    fact('Identity provider', ...servers.flatMap((s, i) => [i ? ', ' : '', h('code', {}, s)]));
  }
  const scope = challenge.scope || (metadata?.scopes_supported || []).join(' ');
  if (scope) fact('Scope to request', h('code', {}, scope));
  if (metadata?.resource_name) fact('Server', metadata.resource_name);
  if (challenge.resource_metadata) {
    fact('Metadata', h('a', { href: challenge.resource_metadata, target: '_blank', rel: 'noopener' }, challenge.resource_metadata));
  }
  const command = servers.some((s) => s.includes('login.microsoftonline.com')) ? tokenCommand(scope) : null;
  return h(
    'div',
    { class: 'refusal', role: 'alert', 'data-testid': 'auth-explanation' },
    h('h2', {}, title),
    h('p', {}, detail),
    h('dl', { class: 'facts' }, facts),
    command ? h('p', {}, 'With the Azure CLI: ', h('code', { class: 'command' }, command)) : null,
    h(
      'details',
      {},
      h('summary', {}, 'What the server sent'),
      h('pre', { class: 'raw' }, `WWW-Authenticate: ${error.wwwAuthenticate || '(none)'}\n\n${error.body || ''}`),
    ),
  );
}
