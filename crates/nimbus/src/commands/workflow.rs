//! `nimbus workflow ls|start|describe|history|stop`: the app's state machines and their
//! executions, through its running `nimbus up`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::resources::{call, call_on, print, running};
use super::stream::segment;

/// List state machines and executions, start and stop executions, read their histories.
#[derive(clap::Args)]
pub(crate) struct WorkflowCommand {
    #[command(subcommand)]
    action: WorkflowAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum WorkflowAction {
    /// List the state machines, or with MACHINE its executions (newest first).
    Ls {
        machine: Option<String>,
        /// Only executions with this status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED).
        #[arg(long)]
        status: Option<String>,
    },
    /// Start an execution of MACHINE and print its ARN.
    Start {
        machine: String,
        /// The input, as JSON (`{}` when absent).
        #[arg(long, conflicts_with = "input_file")]
        input: Option<String>,
        /// Read the input from this file.
        #[arg(long)]
        input_file: Option<PathBuf>,
        /// The execution's name (unique per state machine; a UUID when absent).
        #[arg(long)]
        name: Option<String>,
        /// Wait for the execution to end, print its output, and exit 1 unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Print an execution: its status, input, output or error.
    Describe { execution: String },
    /// Print an execution's history, one event per line.
    History {
        execution: String,
        /// Print each event as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Stop a running execution.
    Stop {
        execution: String,
        #[arg(long)]
        error: Option<String>,
        #[arg(long)]
        cause: Option<String>,
    },
}

impl WorkflowCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let dir = &self.dir;
        let get = |path: &str| call(dir, http::Method::GET, path, Vec::new(), &[]);
        let post = |path: &str, body: Value| {
            call(
                dir,
                http::Method::POST,
                path,
                body.to_string().into_bytes(),
                &[("content-type", "application/json".to_owned())],
            )
        };
        match self.action {
            WorkflowAction::Ls {
                machine: None,
                status: _,
            } => print(&get("/v1/workflows")?),
            WorkflowAction::Ls {
                machine: Some(machine),
                status,
            } => {
                let mut path = format!("/v1/workflows/{}/executions", segment(&machine));
                if let Some(status) = status {
                    path.push_str(&format!("?status={}", segment(&status)));
                }
                print(&get(&path)?)
            }
            WorkflowAction::Start {
                machine,
                input,
                input_file,
                name,
                wait,
            } => {
                let input = match (input, input_file) {
                    (Some(input), _) => input,
                    (None, Some(file)) => std::fs::read_to_string(&file)
                        .with_context(|| format!("reading the input file {}", file.display()))?,
                    (None, None) => "{}".to_owned(),
                };
                if let Err(e) = serde_json::from_str::<Value>(&input) {
                    anyhow::bail!(
                        "the input is not JSON ({e}); pass a JSON document such as '{{\"id\": 1}}'"
                    );
                }
                let body = post(
                    &format!("/v1/workflows/{}/executions", segment(&machine)),
                    json!({ "name": name, "input": input }),
                )?;
                let started: Value = serde_json::from_slice(&body)?;
                let arn = started["executionArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if !wait {
                    println!("{arn}");
                    return Ok(ExitCode::SUCCESS);
                }
                wait_for(dir, &arn)
            }
            WorkflowAction::Describe { execution } => {
                let arn = execution_arn(dir, &execution)?;
                print(&get(&format!("/v1/executions/{}", segment(&arn)))?)
            }
            WorkflowAction::History { execution, json } => {
                let arn = execution_arn(dir, &execution)?;
                let body = get(&format!("/v1/executions/{}/history", segment(&arn)))?;
                if json {
                    return print(&body);
                }
                let history: Value = serde_json::from_slice(&body)?;
                let mut out = std::io::stdout().lock();
                for event in history["events"].as_array().into_iter().flatten() {
                    writeln!(out, "{}", history_line(event))?;
                }
                Ok(ExitCode::SUCCESS)
            }
            WorkflowAction::Stop {
                execution,
                error,
                cause,
            } => {
                let arn = execution_arn(dir, &execution)?;
                print(&post(
                    &format!("/v1/executions/{}/stop", segment(&arn)),
                    json!({ "error": error, "cause": cause }),
                )?)
            }
        }
    }
}

/// Polls the execution until it ends; prints its output (or error) and exits 0 only if it
/// succeeded.
fn wait_for(dir: &std::path::Path, arn: &str) -> anyhow::Result<ExitCode> {
    let record = running(dir)?;
    let runtime = crate::runtime()?;
    let path = format!("/v1/executions/{}", segment(arn));
    let mut delay = Duration::from_millis(50);
    let started = Instant::now();
    loop {
        let body = call_on(&runtime, &record, http::Method::GET, &path, Vec::new(), &[])?;
        let described: Value = serde_json::from_slice(&body)?;
        match described["status"].as_str() {
            Some("RUNNING") => {}
            Some("SUCCEEDED") => {
                println!("{}", described["output"].as_str().unwrap_or("null"));
                return Ok(ExitCode::SUCCESS);
            }
            status => {
                eprintln!(
                    "{arn}: {} after {:.1} s: {}: {}",
                    status.unwrap_or("?"),
                    started.elapsed().as_secs_f64(),
                    described["error"].as_str().unwrap_or(""),
                    described["cause"].as_str().unwrap_or("")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// An execution named by ARN, or as `MACHINE:NAME`.
fn execution_arn(dir: &std::path::Path, execution: &str) -> anyhow::Result<String> {
    if execution.starts_with("arn:") {
        return Ok(execution.to_owned());
    }
    let Some((machine, name)) = execution.split_once(':') else {
        anyhow::bail!(
            "name an execution by its ARN or as MACHINE:NAME (as `nimbus workflow ls MACHINE` lists them), not {execution:?}"
        );
    };
    let body = call(dir, http::Method::GET, "/v1/workflows", Vec::new(), &[])?;
    let machines: Value = serde_json::from_slice(&body)?;
    let Some(arn) = machines["stateMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == machine)
        .and_then(|m| m["stateMachineArn"].as_str())
    else {
        anyhow::bail!(
            "the app has no state machine named {machine:?}; `nimbus workflow ls` lists them"
        );
    };
    Ok(format!(
        "{}:{name}",
        arn.replacen(":stateMachine:", ":execution:", 1)
    ))
}

/// One history event: id, time, type, and the state it concerns (or its error).
fn history_line(event: &Value) -> String {
    let details = event
        .as_object()
        .and_then(|e| e.iter().find(|(k, _)| k.ends_with("EventDetails")))
        .map(|(_, v)| v);
    let what = details
        .and_then(|d| d.get("name").or_else(|| d.get("error")))
        .and_then(Value::as_str)
        .unwrap_or("");
    format!(
        "{:>4}  {:>14.3}  {:<28} {what}",
        event["id"],
        event["timestamp"].as_f64().unwrap_or(0.0),
        event["type"].as_str().unwrap_or("?"),
    )
}
