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
    "health_check", "top_queries", "activity", "index_advice",
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
        # Rows are one JSON text block, not repeated as structuredContent; the other tools declare a schema.
        check(execute.output_schema is None, "execute_query declares no output schema")
        described_tool = next(t for t in tools if t.name == "describe_table")
        check(described_tool.output_schema is not None, "describe_table has an output schema")

        result = await client.call_tool(
            "execute_query",
            {"sql": "SELECT id, title, price FROM books WHERE id = ANY($1) ORDER BY id", "params": [[1, 2]]},
        )
        check(not result.is_error, f"execute_query failed: {result}")
        check(len(result.content) == 1 and result.structured_content is None, "one text block, rows sent once")
        rows = json.loads(result.content[0].text)["rows"]
        check(rows == [[1, "Book 1", "1.25"], [2, "Book 2", "2.50"]], f"rows {rows}")

        rejected = await client.call_tool("execute_query", {"sql": "DROP TABLE books"})
        check(rejected.is_error, "DROP TABLE is rejected")
        check(rejected.structured_content["error"] == "rejected", f"rejection {rejected.structured_content}")

        described = await client.call_tool("describe_table", {"table": "books"})
        check(not described.is_error and "books_author_idx" in json.dumps(described.structured_content), "describe_table")
        check(json.loads(described.content[0].text) == described.structured_content, "text block equals structuredContent")

        # Every other tool's structuredContent is validated by the SDK against the output schema it listed.
        answers = {
            "server_info": {}, "list_databases": {}, "list_schemas": {}, "list_tables": {},
            "search_tables": {"term": "book"}, "get_table_stats": {"table": "books"},
            "explain_query": {"sql": "SELECT * FROM books WHERE id = $1", "params": [1]},
            "health_check": {}, "top_queries": {}, "activity": {}, "index_advice": {"statements": ["SELECT 1"]},
        }
        for name, arguments in answers.items():
            check(next(t for t in tools if t.name == name).output_schema is not None, f"{name} has an output schema")
            answer = await client.call_tool(name, arguments)
            check(not answer.is_error, f"{name} failed: {answer}")

        templates = await client.list_resource_templates()
        check(templates.resource_templates[0].uri_template == "pgmcp://{profile}/tables/{schema}/{table}", "template")
    print(f"python sdk ok ({mode})")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
