//! `holdfast`: the edge cache node and its operator commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use holdfast_control::PurgeTarget;
use holdfast_node::config::{self, Environment, NodeConfig, Overrides};
use holdfast_node::{RunningNode, Sockets, cli, telemetry};

/// jemalloc rather than glibc's malloc: measured on the same commit, less
/// CPU per request on hits (HTTP/3 −7%, HTTP/2 over TLS −15%, HTTP/1.1
/// −1 to −11%), 3 MiB less RSS with 10,000 objects stored, and memory given
/// back to the system after a burst (glibc kept the peak of 1,000 closed
/// QUIC connections; README › Benchmarks).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "holdfast", version, about = "An edge CDN cache node for immutable web assets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node.
    Serve(Box<ServeArgs>),
    /// Check a config file and exit: 0 if it is valid, 1 with the errors if not.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Purge on many nodes at once, shields first, then edges; prints each
    /// node's answer and exits non-zero if any failed.
    Purge(PurgeArgs),
    /// Show a node's hit ratio, objects and bytes per tier, origin health.
    Stats {
        /// The node's admin URL, e.g. http://127.0.0.1:9901.
        #[arg(long, value_name = "URL")]
        node: String,
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// A live view of one node or a fleet: requests per second by cache
    /// result, hit ratio, origin breakers, top URLs. Quit with q or Ctrl-C.
    Top(holdfast_node::top::TopArgs),
    /// Pre-fill a node with the assets of a build manifest (Vite
    /// manifest.json, webpack asset manifest) or a list of URLs.
    Warm {
        /// The node's public URL, e.g. http://127.0.0.1:8080.
        #[arg(long, value_name = "URL")]
        node: String,
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["url", "prefix", "tag", "all"])))]
struct PurgeArgs {
    /// One URL, every variant (scheme ignored): https://cdn.example.com/app.js
    #[arg(long)]
    url: Option<String>,
    /// Every URL starting with this: cdn.example.com/assets/
    #[arg(long)]
    prefix: Option<String>,
    /// Every object with this Surrogate-Key / Cache-Tag.
    #[arg(long)]
    tag: Option<String>,
    /// Everything.
    #[arg(long)]
    all: bool,
    /// Mark stale instead of removing: served only while the origin fails.
    #[arg(long)]
    soft: bool,
    /// Edge node admin URL (repeatable).
    #[arg(long, value_name = "URL")]
    node: Vec<String>,
    /// Shield node admin URL (repeatable); purged before the edges.
    #[arg(long, value_name = "URL")]
    shield: Vec<String>,
    /// TOML file with `shields = [...]` and `edges = [...]` admin URLs.
    #[arg(long, value_name = "FILE")]
    nodes_file: Option<PathBuf>,
    /// File with the admin bearer token (else HOLDFAST_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file; without it, built-in defaults plus these flags.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    /// Take the listening sockets over from the node running with the same
    /// arguments, then let it drain and exit: a zero-downtime restart or
    /// binary upgrade.
    #[arg(long)]
    upgrade: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The environment is read here, once, and handed down (HOLDFAST_LOG
    // just below is the log filter's).
    let env = Environment::from_process();
    // Traces only for a serving node; operator commands just log.
    let telemetry = match telemetry::init(&env, matches!(cli.command, Command::Serve(_))) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("holdfast: cannot set up logs and traces: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::CheckConfig { file } => check_config(&file, &env),
        Command::Serve(args) => serve(*args, env),
        Command::Purge(args) => run_client(purge(args, env.admin_token.as_deref())),
        Command::Stats { node, token_file, json } => run_client(async move {
            let token = cli::token(token_file.as_deref(), env.admin_token.as_deref())?;
            cli::stats(&node, &token, json).await
        }),
        Command::Top(args) => holdfast_node::top::run(args, env.admin_token.as_deref()),
        Command::Warm { node, manifest, concurrency } => run_client(async move {
            let paths = cli::manifest_paths(&manifest)?;
            cli::warm(&node, paths, concurrency).await
        }),
    };
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("holdfast: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an operator command; its `false` becomes a failing exit status.
fn run_client(command: impl std::future::Future<Output = anyhow::Result<bool>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if runtime.block_on(command)? { Ok(()) } else { anyhow::bail!("some nodes failed (see above)") }
}

async fn purge(args: PurgeArgs, token_from_env: Option<&str>) -> anyhow::Result<bool> {
    let token = cli::token(args.token_file.as_deref(), token_from_env)?;
    let (mut shields, mut edges) = (args.shield, args.node);
    if let Some(path) = &args.nodes_file {
        let file = cli::nodes_file(path)?;
        shields.extend(file.shields);
        edges.extend(file.edges);
    }
    let target = match (args.url, args.prefix, args.tag) {
        (Some(url), _, _) => PurgeTarget::Url(url),
        (_, Some(prefix), _) => PurgeTarget::Prefix(prefix),
        (_, _, Some(tag)) => PurgeTarget::Tag(tag),
        _ => PurgeTarget::All,
    };
    cli::purge(target, args.soft, shields, edges, &token).await
}

fn check_config(file: &std::path::Path, env: &Environment) -> anyhow::Result<()> {
    // Parse, then convert, so value errors are found too.
    config::read_file(file)?;
    let config = NodeConfig::load(Some(file), Overrides::default(), env)?;
    // Secrets and certificates are read where the node runs; say which are
    // not readable here without failing the check.
    let mut elsewhere = Vec::new();
    if let Some(holdfast_node::config::AdminToken::File(path)) = &config.admin_token {
        elsewhere.push(path.clone());
    }
    for pair in config.tls.iter().flat_map(|t| &t.certificates) {
        elsewhere.extend([pair.cert.clone(), pair.key.clone()]);
    }
    for path in elsewhere.iter().filter(|p| std::fs::metadata(p).is_err()) {
        println!("note: {} is not readable here; it must exist where the node runs", path.display());
    }
    if config.sites.iter().any(|site| site.hosts.is_empty()) {
        println!(
            "note: a site answers any Host (server.hosts is empty): every host a client names becomes part of \
             cache keys and is sent to the origin; name the hosts you serve"
        );
    }
    for site in &config.sites {
        let forwarded = match &site.forward {
            holdfast_frontend::ForwardHeaders::All => continue,
            holdfast_frontend::ForwardHeaders::Owned => "only holdfast's own fields".to_owned(),
            holdfast_frontend::ForwardHeaders::Named(names) => {
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            }
        };
        println!(
            "note: site {}: responses that Vary on a request field are keyed on it, so the origin must see it; \
             list such fields in origin.forward_headers (now: {forwarded}, plus Accept-Encoding)",
            site.name
        );
    }
    let origins: usize = config.sites.iter().map(|s| s.origin.members.len()).sum();
    println!(
        "{}: ok ({} listener(s), {} site(s), {} origin(s))",
        file.display(),
        config.listen.len(),
        config.sites.len(),
        origins
    );
    Ok(())
}

fn serve(args: ServeArgs, env: Environment) -> anyhow::Result<()> {
    let overrides = args.overrides;
    let config = NodeConfig::load(args.config.as_deref(), overrides.clone(), &env)?;
    let config_path = args.config.clone();
    let sockets = if args.upgrade { Sockets::Upgrade } else { Sockets::Bind };
    // A background thread returns freed pages to the system even while the
    // node is idle, so RSS falls back after a burst instead of waiting for
    // the next allocation. Started before the runtime's threads.
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(%error, "jemalloc background purging unavailable; freed memory is returned as the node allocates");
    }
    let runtime = holdfast_node::runtime::build(config.workers)?;
    runtime.block_on(async move {
        // Before the node serves: a SIGTERM or SIGHUP sent as soon as it
        // answers must find these handlers, not the default action (the
        // process killed mid-request, or by a reload).
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let node = RunningNode::start_with(config, sockets).await?;
        if let Some(path) = config_path {
            node.reloader().set_source(path, overrides);
        }
        let reload = async {
            loop {
                hangup.recv().await;
                match node.reload() {
                    Ok(summary) => tracing::info!("SIGHUP: {summary}"),
                    Err(error) => tracing::error!(error = %format!("{error:#}"), "SIGHUP: reload refused; the running config is kept"),
                }
            }
        };
        tokio::select! {
            () = reload => {}
            _ = interrupt.recv() => {
                tracing::info!("interrupted: draining in-flight requests");
                node.shutdown().await;
            }
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: not ready; draining in-flight requests");
                node.shutdown().await;
            }
            () = node.handed_over() => {
                tracing::info!("a new node serves the listeners: draining in-flight requests");
                node.hand_over().await;
            }
        }
        tracing::info!("stopped");
        Ok(())
    })
}
