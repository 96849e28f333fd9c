//! pgmcp: a PostgreSQL server for the Model Context Protocol.
//!
//! Data flows one way: a request arrives (stdio) → which tool → SQL guard → database → rows as JSON →
//! response. Each module owns one step of that path.

pub mod app;
pub mod azure_grant;
pub mod chat;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod guard;
pub mod http;
pub mod identity;
pub mod mcp;
pub mod probe;
pub mod telemetry;
pub mod tools;
pub mod web;
