"""The official Python MCP SDK's OAuth client (`OAuthClientProvider`) signs in to `pgmcp serve --http
--oauth-server` the way a person would: the SDK discovers pgmcp as authorization server, registers (dynamic
registration) or names its client ID metadata document, and opens the authorization URL; this script plays the
browser — the consent page, the OpenID provider's sign-in form, the redirects — and hands the code back to the SDK,
which redeems it and calls tools with pgmcp's token.

usage: oauth_signin_test.py MCP_URL LOGIN MODE [CLIENT_METADATA_URL]   (MODE: dcr | cimd)
Prints one JSON line with what happened; exits non-zero with a message on the first mismatch.
"""

import asyncio
import json
import os
import re
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:8765/callback"


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


class Browser:
    """Follows redirects and fills in the two forms a person would: pgmcp's consent and the provider's sign-in."""

    def __init__(self, login: str):
        self.login = login
        self.result: AuthorizationCodeResult | None = None
        self.pages: list[str] = []

    async def open(self, url: str) -> None:
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
            response = await http.get(url)
            for _ in range(20):
                if os.environ.get("PGMCP_TEST_BROWSER_LOG"):
                    print(f"browser: {response.status_code} {response.url}", file=sys.stderr)
                if response.status_code in (301, 302, 303, 307):
                    location = urljoin(str(response.url), response.headers["location"])
                    if location.startswith(REDIRECT_URI):
                        query = parse_qs(urlparse(location).query)
                        check("code" in query, f"the redirect back carries no code: {location}")
                        self.result = AuthorizationCodeResult(
                            code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
                        )
                        return
                    response = await http.get(location)
                    continue
                check(response.status_code == 200, f"{response.url} answered {response.status_code}: {response.text}")
                page = response.text
                if os.environ.get("PGMCP_TEST_BROWSER_LOG"):
                    print(f"browser page: {page[:400]}", file=sys.stderr)
                consent = re.search(r'name=consent value="([^"]+)"', page)
                if consent:
                    self.pages.append("consent")
                    check("frame-ancestors 'none'" in response.headers.get("content-security-policy", ""), "CSP")
                    response = await http.post(
                        urljoin(str(response.url), "authorize"),
                        data={"consent": consent.group(1), "decision": "allow"},
                    )
                    continue
                login = re.search(r'action="([^"]+/login)"', page)
                check(login is not None, f"unexpected page at {response.url}: {page[:300]}")
                self.pages.append("provider sign-in")
                response = await http.post(urljoin(str(response.url), login.group(1)), data={"login": self.login})
            raise SystemExit("FAIL: more than 20 steps through the sign-in")

    async def callback(self) -> AuthorizationCodeResult:
        check(self.result is not None, "the browser never came back to the redirect URI")
        return self.result


async def main(url: str, login: str, mode: str, metadata_url: str | None) -> None:
    storage = MemoryStorage()
    browser = Browser(login)
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="pgmcp sign-in test",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
        client_metadata_url=metadata_url if mode == "cimd" else None,
    )
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), cache=None) as client:
            tools = (await client.list_tools()).tools
            check("execute_query" in [t.name for t in tools], f"tools {[t.name for t in tools]}")
            result = await client.call_tool("execute_query", {"sql": "SELECT 41 + 1 AS signed_in"})
            check(not result.is_error, f"execute_query failed: {result}")
            rows = json.loads(result.content[0].text)["rows"]
            check(rows == [[42]], f"rows {rows}")
    check(storage.tokens is not None and storage.tokens.refresh_token, "the SDK holds a refresh token")
    client_id = storage.client_info.client_id
    if mode == "cimd":
        check(client_id == metadata_url, f"client id {client_id} is not the metadata document URL")
    else:
        check(client_id.startswith("pgmcp-client."), f"client id {client_id} is not a pgmcp registration")
    print(
        json.dumps(
            {
                "ok": mode,
                "pages": browser.pages,
                "client_id": client_id,
                "access_token": storage.tokens.access_token,
                "refresh_token": storage.tokens.refresh_token,
            }
        )
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], args[2], args[3] if len(args) > 3 else None))
