// A small MCP client for Streamable HTTP: JSON-RPC over POST, answers as JSON or as an SSE stream, the
// `initialize` handshake (protocol 2025-11-25), and the Mcp-Session-Id header when the server keeps sessions.

export const PROTOCOL_VERSION = '2025-11-25';
const CLIENT_INFO = { name: 'pgmcp-web', title: 'pgmcp web client', version: '1' };

/** A response that was not a JSON-RPC answer: carries what is needed to explain it (status, challenge, body). */
export class HttpError extends Error {
  constructor(status, statusText, headers, body) {
    super(`HTTP ${status} ${statusText}`.trim());
    this.status = status;
    this.wwwAuthenticate = headers.get('www-authenticate');
    this.body = body;
  }
}

/** A JSON-RPC error object returned by the server. */
export class RpcError extends Error {
  constructor(error) {
    super(error.message || 'JSON-RPC error');
    this.code = error.code;
    this.data = error.data;
  }
}

/** The JSON-RPC messages of an SSE body (`data:` lines joined per event; other fields ignored). */
export function parseSse(text) {
  const messages = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data.trim() === '') continue;
    try {
      messages.push(JSON.parse(data));
    } catch {
      // A keep-alive or a partial event is not a message.
    }
  }
  return messages;
}

export class McpClient {
  /**
   * @param {string} url the MCP endpoint, e.g. https://host/mcp
   * @param {string} token a bearer token, or '' for none
   * @param {(exchange: object) => void} onExchange called with every request/response pair (for the raw view)
   */
  constructor(url, token, onExchange = () => {}) {
    this.url = url;
    this.token = token;
    this.onExchange = onExchange;
    this.sessionId = null;
    this.nextId = 1;
    this.server = null;
  }

  headers() {
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
    };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.sessionId) headers['Mcp-Session-Id'] = this.sessionId;
    if (this.server) headers['MCP-Protocol-Version'] = this.server.protocolVersion;
    return headers;
  }

  async post(message) {
    const started = performance.now();
    const response = await fetch(this.url, {
      method: 'POST',
      headers: this.headers(),
      body: JSON.stringify(message),
      credentials: 'omit',
      cache: 'no-store',
    });
    const sessionId = response.headers.get('mcp-session-id');
    if (sessionId) this.sessionId = sessionId;
    const text = await response.text();
    const exchange = {
      request: message,
      status: response.status,
      contentType: response.headers.get('content-type') || '',
      responseText: text,
      ms: Math.round(performance.now() - started),
    };
    if (!response.ok) {
      this.onExchange(exchange);
      throw new HttpError(response.status, response.statusText, response.headers, text);
    }
    if (message.id === undefined) {
      this.onExchange(exchange);
      return null;
    }
    const candidates = exchange.contentType.includes('text/event-stream')
      ? parseSse(text)
      : text.trim() === '' ? [] : [JSON.parse(text)];
    const answer = candidates.find((m) => m && m.id === message.id && ('result' in m || 'error' in m));
    exchange.response = answer ?? null;
    this.onExchange(exchange);
    if (!answer) throw new Error(`the server sent no answer to ${message.method}`);
    if (answer.error) throw new RpcError(answer.error);
    return answer.result;
  }

  request(method, params) {
    const message = { jsonrpc: '2.0', id: this.nextId++, method };
    if (params !== undefined) message.params = params;
    return this.post(message);
  }

  notify(method, params) {
    const message = { jsonrpc: '2.0', method };
    if (params !== undefined) message.params = params;
    return this.post(message);
  }

  /** The handshake: initialize, then notifications/initialized. Returns the server's initialize result. */
  async connect() {
    this.sessionId = null;
    this.server = null;
    const result = await this.request('initialize', {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: CLIENT_INFO,
    });
    this.server = result;
    await this.notify('notifications/initialized');
    return result;
  }

  async listTools() {
    const tools = [];
    let cursor;
    // Bounded: a server that keeps returning cursors must not hang the page.
    for (let page = 0; page < 50; page += 1) {
      const result = await this.request('tools/list', cursor ? { cursor } : {});
      tools.push(...(result.tools || []));
      cursor = result.nextCursor;
      if (!cursor) break;
    }
    return tools;
  }

  /** tools/call; a session the server forgot (404) is re-established once. */
  async callTool(name, args) {
    try {
      return await this.request('tools/call', { name, arguments: args });
    } catch (err) {
      if (err instanceof HttpError && err.status === 404 && this.sessionId) {
        await this.connect();
        return this.request('tools/call', { name, arguments: args });
      }
      throw err;
    }
  }
}

/** The structured value of a tool result: structuredContent, else the JSON of its first text block. */
export function toolValue(result) {
  if (result && result.structuredContent !== undefined) return result.structuredContent;
  const text = result?.content?.find((c) => c.type === 'text')?.text;
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { text };
  }
}
