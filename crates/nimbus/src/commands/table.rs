//! `nimbus table ls|get|put|rm|scan|query`: the app's tables, through its running
//! `nimbus up`, with items as plain JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nimbus_server::wire;
use serde_json::Value;

use super::resources::{call, print};

/// List tables, and get, put, delete, scan and query items.
#[derive(clap::Args)]
pub(crate) struct TableCommand {
    #[command(subcommand)]
    action: TableAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum TableAction {
    /// List tables with their keys and item counts.
    Ls,
    /// Print the item with this key (JSON: `{"id": "a"}`).
    Get { table: String, key: String },
    /// Store an item (JSON), replacing the one with its key; prints the one replaced.
    Put { table: String, item: String },
    /// Delete the item with this key; prints it.
    Rm { table: String, key: String },
    /// Print items in key order, filtered.
    Scan {
        table: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Print the items matching a key condition (`id = :id`), in sort key order.
    Query {
        table: String,
        key_condition: String,
        /// Query this index instead of the table.
        #[arg(long)]
        index: Option<String>,
        /// Descending sort key order.
        #[arg(long)]
        desc: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
}

#[derive(clap::Args)]
struct ReadArgs {
    /// A filter expression (`done = :no`).
    #[arg(long)]
    filter: Option<String>,
    /// The expression's `:value` placeholders as JSON (`{":no": false}`).
    #[arg(long)]
    values: Option<String>,
    /// The expression's `#name` placeholders as JSON (`{"#n": "name"}`).
    #[arg(long)]
    names: Option<String>,
    /// Items to read at most.
    #[arg(long)]
    limit: Option<usize>,
}

impl TableCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let dir = &self.dir;
        let path = |table: &str, rest: &str| format!("/v1/tables/{}/{rest}", segment(table));
        match self.action {
            TableAction::Ls => print(&call(
                dir,
                http::Method::GET,
                "/v1/tables",
                Vec::new(),
                &[],
            )?),
            TableAction::Get { table, key } => {
                let request = wire::TableKey {
                    key: json_arg(&key, "the key")?,
                };
                item(dir, &path(&table, "get"), &request, &table)
            }
            TableAction::Put { table, item: text } => {
                let request = wire::PutTableItem {
                    item: json_arg(&text, "the item")?,
                };
                let body = call(
                    dir,
                    http::Method::PUT,
                    &path(&table, "items"),
                    serde_json::to_vec(&request)?,
                    &[],
                )?;
                print(&body)
            }
            TableAction::Rm { table, key } => {
                let request = wire::TableKey {
                    key: json_arg(&key, "the key")?,
                };
                item(dir, &path(&table, "delete"), &request, &table)
            }
            TableAction::Scan { table, read } => {
                let request = read.request(None, None, true)?;
                read_pages(dir, &path(&table, "scan"), request)
            }
            TableAction::Query {
                table,
                key_condition,
                index,
                desc,
                read,
            } => {
                let request = read.request(Some(key_condition), index, !desc)?;
                read_pages(dir, &path(&table, "query"), request)
            }
        }
    }
}

/// Calls a get or delete and prints the item; no item with the key is an error.
fn item(dir: &Path, path: &str, request: &wire::TableKey, table: &str) -> anyhow::Result<ExitCode> {
    let body = call(
        dir,
        http::Method::POST,
        path,
        serde_json::to_vec(request)?,
        &[],
    )?;
    let answer: wire::TableItem = serde_json::from_slice(&body).context("reading the item")?;
    match answer.item {
        Some(item) => print(serde_json::to_string(&item)?.as_bytes()),
        None => anyhow::bail!("no item in table {table} has the key {}", request.key),
    }
}

/// Reads every page (up to `limit` items) and prints the items, one JSON object a line.
fn read_pages(dir: &Path, path: &str, mut request: wire::ReadTable) -> anyhow::Result<ExitCode> {
    let mut left = request.limit;
    let mut lines = String::new();
    loop {
        let body = call(
            dir,
            http::Method::POST,
            path,
            serde_json::to_vec(&request)?,
            &[],
        )?;
        let page: wire::TableItems = serde_json::from_slice(&body).context("reading the items")?;
        for item in &page.items {
            lines.push_str(&serde_json::to_string(item)?);
            lines.push('\n');
        }
        if let Some(left) = left.as_mut() {
            *left = left.saturating_sub(page.items.len());
        }
        match page.last_key {
            Some(key) if left != Some(0) => {
                request.start_key = Some(key);
                request.limit = left;
            }
            _ => break,
        }
    }
    if !lines.is_empty() {
        std::io::Write::write_all(&mut std::io::stdout().lock(), lines.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

impl ReadArgs {
    fn request(
        self,
        key_condition: Option<String>,
        index: Option<String>,
        forward: bool,
    ) -> anyhow::Result<wire::ReadTable> {
        let values: BTreeMap<String, Value> = match &self.values {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("--values must be a JSON object, got {text}"))?,
            None => BTreeMap::new(),
        };
        let names: BTreeMap<String, String> = match &self.names {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("--names must be a JSON object of strings, got {text}"))?,
            None => BTreeMap::new(),
        };
        Ok(wire::ReadTable {
            key_condition,
            filter: self.filter,
            index,
            names,
            values,
            limit: self.limit,
            start_key: None,
            forward: Some(forward),
        })
    }
}

fn json_arg(text: &str, what: &str) -> anyhow::Result<Value> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("{what} must be JSON, got {text}"))?;
    if !value.is_object() {
        anyhow::bail!("{what} must be a JSON object, got {text}");
    }
    Ok(value)
}

fn segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}
