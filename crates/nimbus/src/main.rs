//! The `nimbus` command: run a folder of Lambda-style functions as a local serverless
//! platform.

mod app;
mod banner;
mod bundle;
mod commands;
mod control;
mod duration;
mod listen;
mod secrets;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser as _;

/// Serverless on your own machine: run a Serverless Framework app's functions on HTTP
/// requests, scaling each from zero and back.
#[derive(clap::Parser)]
#[command(name = "nimbus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Up(commands::up::UpCommand),
    Dev(commands::dev::DevCommand),
    Invoke(commands::invoke::InvokeCommand),
    Validate(commands::validate::ValidateCommand),
    Logs(commands::logs::LogsCommand),
    Invocations(commands::invocations::InvocationsCommand),
    Cost(commands::cost::CostCommand),
    Trace(commands::trace::TraceCommand),
    Top(commands::top::TopCommand),
    Queue(commands::resources::QueueCommand),
    Topic(commands::resources::TopicCommand),
    Bucket(commands::resources::BucketCommand),
    Kv(commands::resources::KvCommand),
    Stream(commands::stream::StreamCommand),
    Table(commands::table::TableCommand),
    Workflow(commands::workflow::WorkflowCommand),
    Secret(commands::secret::SecretCommand),
    Runtimes(commands::runtimes::RuntimesCommand),
    Server(commands::server::ServerCommand),
    Credentials(commands::server::credentials::CredentialsCommand),
    Deploy(commands::deploy::DeployCommand),
    Versions(commands::deploy::VersionsCommand),
    Promote(commands::deploy::PromoteCommand),
    Rollback(commands::deploy::RollbackCommand),
    Alias(commands::deploy::AliasCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let res = match cli.command {
        Command::Up(cmd) => cmd.execute(),
        Command::Dev(cmd) => cmd.execute(),
        Command::Invoke(cmd) => cmd.execute(),
        Command::Validate(cmd) => cmd.execute(),
        Command::Logs(cmd) => cmd.execute(),
        Command::Invocations(cmd) => cmd.execute(),
        Command::Cost(cmd) => cmd.execute(),
        Command::Trace(cmd) => cmd.execute(),
        Command::Top(cmd) => cmd.execute(),
        Command::Queue(cmd) => cmd.execute(),
        Command::Topic(cmd) => cmd.execute(),
        Command::Bucket(cmd) => cmd.execute(),
        Command::Kv(cmd) => cmd.execute(),
        Command::Stream(cmd) => cmd.execute(),
        Command::Table(cmd) => cmd.execute(),
        Command::Workflow(cmd) => cmd.execute(),
        Command::Secret(cmd) => cmd.execute(),
        Command::Runtimes(cmd) => cmd.execute(),
        Command::Server(cmd) => cmd.execute(),
        Command::Credentials(cmd) => cmd.execute(),
        Command::Deploy(cmd) => cmd.execute(),
        Command::Versions(cmd) => cmd.execute(),
        Command::Promote(cmd) => cmd.execute(),
        Command::Rollback(cmd) => cmd.execute(),
        Command::Alias(cmd) => cmd.execute(),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}

/// A multi-threaded tokio runtime for commands that serve or invoke.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
