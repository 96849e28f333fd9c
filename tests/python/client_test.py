"""Drives pgmcp over stdio with the official Python MCP SDK, in one protocol mode.

usage: client_test.py PGMCP_BINARY DATABASE_URL MODE   (MODE: legacy | auto | 2026-07-28)
Exits non-zero with a message on the first mismatch.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters

EXPECTED_TOOLS = [
    "server_info", "list_databases", "list_schemas", "list_tables", "describe_table",
    "search_tables", "get_table_stats", "read_table", "execute_query", "explain_query",
]


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAIL: {message}")


async def main(binary: str, url: str, mode: str) -> None:
    params = StdioServerParameters(command=binary, args=["serve", "--database-url", url], env={"PGMCP_LOG": "warn"})
    async with Client(params, mode=mode, cache=None) as client:
        check(client.server_info is None or client.server_info.name == "pgmcp", f"server name {client.server_info}")
        tools = (await client.list_tools()).tools
        check([t.name for t in tools] == EXPECTED_TOOLS, f"tool names {[t.name for t in tools]}")
        execute = next(t for t in tools if t.name == "execute_query")
        check(execute.annotations.read_only_hint is True, "execute_query is read-only")
        check(execute.output_schema is not None, "execute_query has an output schema")

        result = await client.call_tool(
            "execute_query",
            {"sql": "SELECT id, title, price FROM books WHERE id = ANY($1) ORDER BY id", "params": [[1, 2]]},
        )
        check(not result.is_error, f"execute_query failed: {result}")
        rows = result.structured_content["rows"]
        check(rows == [[1, "Book 1", "1.25"], [2, "Book 2", "2.50"]], f"rows {rows}")
        check(json.loads(result.content[0].text) == result.structured_content, "text block equals structuredContent")

        rejected = await client.call_tool("execute_query", {"sql": "DROP TABLE books"})
        check(rejected.is_error, "DROP TABLE is rejected")
        check(rejected.structured_content["error"] == "rejected", f"rejection {rejected.structured_content}")

        described = await client.call_tool("describe_table", {"table": "books"})
        check(not described.is_error and "books_author_idx" in json.dumps(described.structured_content), "describe_table")

        templates = await client.list_resource_templates()
        check(templates.resource_templates[0].uri_template == "pgmcp://{profile}/tables/{schema}/{table}", "template")
    print(f"python sdk ok ({mode})")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
