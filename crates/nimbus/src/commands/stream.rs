//! `nimbus stream ls|put|tail`: the app's ordered streams, through its running `nimbus up`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nimbus_server::wire;

use super::resources::{call, call_on, print, running};

/// How long one read of `tail` waits on the server for new records.
const WAIT_SECONDS: f64 = 10.0;

/// List streams, put records and follow them.
#[derive(clap::Args)]
pub(crate) struct StreamCommand {
    #[command(subcommand)]
    action: StreamAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum StreamAction {
    /// List data streams and tables' change streams (`table/NAME`).
    Ls,
    /// Put records, one per DATA, in order.
    Put {
        stream: String,
        #[arg(required = true)]
        data: Vec<String>,
        /// The partition key, which decides the shard (a new random one per call when absent).
        #[arg(long = "partition-key", short = 'k')]
        partition_key: Option<String>,
    },
    /// Print records as they are appended, one per line: partition key, a tab, the data.
    Tail {
        stream: String,
        /// Start from the oldest records kept instead of only new ones.
        #[arg(long)]
        from_start: bool,
        /// Exit once every record so far is printed, instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
    },
}

impl StreamCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let dir = &self.dir;
        match self.action {
            StreamAction::Ls => print(&call(
                dir,
                http::Method::GET,
                "/v1/streams",
                Vec::new(),
                &[],
            )?),
            StreamAction::Put {
                stream,
                data,
                partition_key,
            } => {
                let partition_key =
                    partition_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let request = wire::PutStreamRecords {
                    records: data
                        .into_iter()
                        .map(|data| wire::NewStreamRecord {
                            partition_key: partition_key.clone(),
                            data: Some(data),
                            data_base64: None,
                        })
                        .collect(),
                };
                let path = format!("/v1/streams/{}/records", segment(&stream));
                print(&call(
                    dir,
                    http::Method::POST,
                    &path,
                    serde_json::to_vec(&request)?,
                    &[],
                )?)
            }
            StreamAction::Tail {
                stream,
                from_start,
                no_follow,
            } => {
                let mut from = if from_start { "trim_horizon" } else { "latest" }.to_owned();
                let record = running(dir)?;
                let runtime = crate::runtime()?;
                loop {
                    let query = wire::ReadStream {
                        from: Some(from.clone()),
                        limit: Some(1000),
                        wait: (!no_follow).then_some(WAIT_SECONDS),
                    };
                    let path = format!(
                        "/v1/streams/{}/records{}",
                        segment(&stream),
                        wire::url_query(&query)
                    );
                    let body =
                        call_on(&runtime, &record, http::Method::GET, &path, Vec::new(), &[])?;
                    let page: wire::StreamRecords =
                        serde_json::from_slice(&body).context("reading the stream's records")?;
                    let mut out = std::io::stdout().lock();
                    for record in &page.records {
                        let data = record.bytes().unwrap_or_default();
                        writeln!(
                            out,
                            "{}\t{}",
                            record.partition_key,
                            String::from_utf8_lossy(&data)
                        )?;
                    }
                    out.flush()?;
                    from = page.cursor;
                    // A full page means more are waiting; otherwise the server has waited.
                    if page.records.len() < 1000 && no_follow {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
    }
}

/// A stream name as one path segment: `table/orders` is `table%2Forders`.
pub(super) fn segment(name: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}
