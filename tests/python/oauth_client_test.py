"""The official Python MCP SDK against `pgmcp serve --http` protected by an OpenID provider: the SDK's own OAuth
client-credentials flow reads pgmcp's 401 challenge and Protected Resource Metadata, discovers the provider,
gets a token for pgmcp's resource and calls tools with it.

usage: oauth_client_test.py MCP_URL ISSUER CLIENT_ID CLIENT_SECRET MODE   (MODE: legacy | 2026-07-28)
Exits non-zero with a message on the first mismatch.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAIL: {message}")


async def main(url: str, issuer: str, client_id: str, secret: str, mode: str) -> None:
    storage = MemoryStorage()
    auth = ClientCredentialsOAuthProvider(
        server_url=url, storage=storage, client_id=client_id, client_secret=secret, issuer=issuer
    )
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
            tools = (await client.list_tools()).tools
            check("execute_query" in [t.name for t in tools], f"tools {[t.name for t in tools]}")
            result = await client.call_tool("execute_query", {"sql": "SELECT 41 + 1 AS answer"})
            check(not result.is_error, f"execute_query failed: {result}")
            rows = json.loads(result.content[0].text)["rows"]
            check(rows == [[42]], f"rows {rows}")
    check(storage.tokens is not None and storage.tokens.access_token, "the SDK obtained a token")
    print(f"python sdk oauth ok ({mode})")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
