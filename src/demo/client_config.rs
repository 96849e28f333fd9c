//! `pgmcp demo --print-config`: client configuration a user can paste as it is.

use std::path::Path;

use serde_json::json;

/// Configuration snippets for Claude Desktop and VS Code that launch this binary's demo over stdio.
pub fn client_config(binary: &Path) -> String {
    let command = binary.display().to_string();
    let claude = json!({
        "mcpServers": {
            "pgmcp-demo": { "command": command, "args": ["demo"] }
        }
    });
    let vscode = json!({
        "servers": {
            "pgmcp-demo": { "type": "stdio", "command": command, "args": ["demo"] }
        }
    });
    let pretty =
        |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
    format!(
        "# Claude Desktop: add to claude_desktop_config.json\n\
         #   macOS:   ~/Library/Application Support/Claude/claude_desktop_config.json\n\
         #   Windows: %APPDATA%\\Claude\\claude_desktop_config.json\n\
         {}\n\n\
         # VS Code: save as .vscode/mcp.json in your workspace (or run \"MCP: Add Server\")\n\
         {}\n\n\
         # For your own database, replace [\"demo\"] with\n\
         #   [\"serve\", \"--database-url\", \"postgresql://readonly_user@host:5432/dbname\"]\n\
         # and keep passwords out of the file: use ~/.pgpass, PGPASSWORD in \"env\", or a config profile.\n",
        pretty(&claude),
        pretty(&vscode)
    )
}

#[cfg(test)]
mod tests {
    use super::client_config;

    #[test]
    fn snippets_are_valid_json_naming_the_binary() {
        let text = client_config(std::path::Path::new("/opt/pgmcp/bin/pgmcp"));
        let blocks: Vec<&str> = text.split("\n\n").filter(|b| b.contains('{')).collect();
        for block in blocks.iter().take(2) {
            let json_start = block.find('{').unwrap();
            let value: serde_json::Value =
                serde_json::from_str(&block[json_start..]).expect("valid JSON");
            assert!(value.to_string().contains("/opt/pgmcp/bin/pgmcp"));
        }
    }
}
