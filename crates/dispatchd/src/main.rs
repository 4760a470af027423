//! `dispatchd`: the binary. Parses the command line, loads configuration, wires the store,
//! the HTTP server and (later) the workers together. Errors end here as readable messages.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dispatch_server::clock::{Clock, SystemClock};

mod app;
mod config;
mod console_bench;
mod demo;
mod model_cli;
mod monitors;
mod notify;
mod odoo;
mod outbound;
#[cfg(test)]
mod outbound_tests;
mod policy_cli;
mod scheduler;
mod security_cli;
mod workers;

use config::{Config, LogFormat, Overrides};

/// mimalloc: the writer and the HTTP layer allocate and free many mid-sized buffers (order
/// documents, JSON bodies); glibc's allocator spent a third of the webhook path's CPU on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dispatchd",
    version,
    about = "The dispatch control layer for Odoo logistics",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone, Default)]
struct StoreArgs {
    /// Directory of the embedded database (and of a dispatchd.toml, if present).
    #[arg(long, env = "DISPATCHD_DATA_DIR", conflicts_with = "database_url")]
    data_dir: Option<PathBuf>,
    /// Database URL instead of a data directory: postgres://USER@HOST/DB or sqlite://PATH.
    #[arg(long, env = "DISPATCHD_DATABASE_URL")]
    database_url: Option<String>,
    /// Configuration file (TOML); see examples/dispatchd.toml.
    #[arg(long, env = "DISPATCHD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Load a realistic scenario (three warehouses, ~2,000 open orders) and serve it.
    Demo {
        /// Where to keep the demo's data; a new temporary directory when omitted.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Seed of the scenario: the same seed gives the same orders.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of open orders to generate.
        #[arg(long, default_value_t = 2000)]
        orders: usize,
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Time the console's pages over a SQLite database of many open orders (BENCHMARKS.md).
    ConsoleBench {
        /// Open orders to load (the demo's generator); an existing database is topped up.
        #[arg(long, default_value_t = 100_000)]
        orders: usize,
        /// Where to keep the database; a directory under the system's temp dir when omitted.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Timed requests per page.
        #[arg(long, default_value_t = 30)]
        requests: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Manage users (people and their roles, console passwords).
    User {
        #[command(subcommand)]
        command: security_cli::UserCmd,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: security_cli::AuditCmd,
    },
    /// The master key ring that seals stored secrets.
    Key {
        #[command(subcommand)]
        command: security_cli::KeyCmd,
    },
    /// Secrets stored sealed in the database (carrier keys, webhook secrets, SMTP, Odoo).
    Secret {
        #[command(subcommand)]
        command: security_cli::SecretCmd,
    },
    /// The permission matrix: which role may do what.
    Permissions {
        /// As the Markdown table of docs/security.md.
        #[arg(long)]
        markdown: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check, replay and explain the dispatch policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
    /// The Odoo connector: check the connection, run a sync.
    Odoo {
        #[command(subcommand)]
        command: OdooCmd,
    },
    /// The late-departure risk model: train, list, promote, roll back.
    Model {
        #[command(subcommand)]
        command: ModelCmd,
    },
    /// The dispatch history the risk model learns from: import a CSV, or generate a demo one.
    History {
        #[command(subcommand)]
        command: HistoryCmd,
    },
    /// Jobs that failed for good (carrier bookings): list them, send one back for a new attempt.
    #[command(name = "dead-letters")]
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCmd,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Check a policy file: exit 0 when valid, 1 with every problem as file:line:col: message.
    Check {
        file: PathBuf,
        /// Also check warehouse codes against this configuration.
        #[arg(long, env = "DISPATCHD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// What-if: re-evaluate recorded decisions under a candidate policy and report the
    /// differences. Reads the event log; changes nothing.
    Replay {
        candidate: PathBuf,
        /// Only decisions evaluated at or after this date (YYYY-MM-DD) or RFC 3339 instant.
        #[arg(long)]
        since: Option<String>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
        /// How many example orders to show.
        #[arg(long, default_value_t = 10)]
        examples: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Fill an empty data directory with recorded decisions for a replay benchmark: demo
    /// orders, each received and then updated and re-evaluated every 37 minutes.
    GenerateDecisions {
        /// Orders to generate.
        #[arg(long, default_value_t = 100_000)]
        orders: usize,
        /// Decisions per order (the first on arrival, the others after updates).
        #[arg(long, default_value_t = 10)]
        per_order: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Clock of the first decisions (RFC 3339); a Tuesday morning by default.
        #[arg(long, default_value = "2026-11-24T08:00:00Z")]
        start: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Why an order is held, why this priority, why this carrier.
    Explain {
        order_id: String,
        /// The last evaluation as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum OdooCmd {
    /// Connect to Odoo and print the server version, the user and its access rights on the
    /// models dispatchd needs; exit 1 when something is missing.
    Check {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Pull changed delivery orders from Odoo into dispatchd.
    Sync {
        /// Run one sync and exit (the server runs it as the scheduled action `odoo-sync`).
        #[arg(long, required = true)]
        once: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum DeadLetterCmd {
    /// List dead letters, newest first, one JSON object per line.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Queue a dead letter again (same idempotency key, fresh attempt budget); a running
    /// `dispatchd serve` picks it up.
    Retry {
        /// The dead letter's id (from `list`).
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Train a candidate on the stored history (time-based split) and make it active when no
    /// model is, or when it is at least as good as the active one on the same held-out orders.
    Train {
        /// Boosting rounds.
        #[arg(long, default_value_t = 150)]
        iterations: usize,
        /// Share of the latest history held out for evaluation.
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every model with its status and held-out metrics, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make a model the active one.
    Promote {
        /// The model's version, from `dispatchd model list`.
        #[arg(value_name = "VERSION")]
        model: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make the previously active model active again.
    Rollback {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum HistoryCmd {
    /// Import completed dispatches from CSV (columns: see docs/intelligence.md); all or nothing.
    Import {
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Generate realistic history with planted effects for the demo warehouses.
    Generate {
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 730)]
        days: u32,
        /// Volume multiplier (1.0 ≈ 1,060 dispatches per ship day).
        #[arg(long, default_value_t = 0.3)]
        scale: f64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print it on stdout (shown once; only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated roles, e.g. dispatcher,supervisor.
        #[arg(long)]
        roles: String,
        /// Act for this user (roles must be a subset of theirs); without it, a service token.
        #[arg(long)]
        user: Option<String>,
        /// Expire after this many days.
        #[arg(long)]
        expires_days: Option<u32>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token (by id `tok_…` or prefix): it stops working on the next request.
    Revoke {
        token: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Tokens, one JSON object per line (never a secret or its hash).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn overrides(store: &StoreArgs, listen: Option<SocketAddr>, log_format: Option<LogFormat>) -> Overrides {
    Overrides { listen, data_dir: store.data_dir.clone(), database_url: store.database_url.clone(), log_format }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| anyhow::anyhow!("--since `{s}` is neither a date (2026-11-24) nor an RFC 3339 instant"))
}

const DEFAULT_LOG: &str = "info,sqlx=warn,tower_http=warn";

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Cmd::Serve { store, listen, log_format } => {
            let cfg = Config::load(store.config.as_deref(), &overrides(&store, listen, log_format))?;
            init_logging(cfg.log_format, DEFAULT_LOG);
            let store_handle = app::open_store(&cfg).await?;
            let listener = app::bind(cfg.listen).await?;
            tracing::info!(address = %listener.local_addr()?, database = %cfg.database()?, "dispatchd serving");
            let stored = security_cli::opened_secrets(store_handle.as_ref()).await?;
            let carriers = std::sync::Arc::new(cfg.carriers_with(&|k| stored.get(k).cloned())?);
            app::serve(listener, store_handle, &cfg, clock, carriers, cfg.booking.clone()).await
        }
        Cmd::Demo { data_dir, listen, seed, orders, log_format } => {
            init_logging(log_format.unwrap_or_default(), "warn");
            app::demo(app::DemoArgs { data_dir, listen, seed, orders }, clock).await
        }
        Cmd::ConsoleBench { orders, data_dir, requests, seed } => {
            init_logging(LogFormat::Human, "warn");
            console_bench::run(console_bench::Args { orders, data_dir, requests, seed }, clock).await
        }
        Cmd::Token { command } => {
            init_logging(LogFormat::Human, "warn");
            let store = match &command {
                TokenCmd::Create { store, .. } | TokenCmd::Revoke { store, .. } | TokenCmd::List { store } => store,
            };
            let cfg = Config::load(store.config.as_deref(), &overrides(store, None, None))?;
            let s = app::open_store(&cfg).await?;
            let actor = security_cli::cli_actor();
            let result: Result<()> = async {
                match command {
                    TokenCmd::Create { name, roles, user, expires_days, .. } => {
                        let roles = dispatch_server::auth::parse_roles(&roles)?;
                        let now = clock.now();
                        let expires = expires_days.map(|d| now + chrono::Duration::days(i64::from(d)));
                        let token = dispatch_server::identity::create_token(
                            s.as_ref(),
                            &actor,
                            &name,
                            user.as_deref(),
                            &roles,
                            now,
                            expires,
                        )
                        .await?;
                        println!("{token}");
                    }
                    TokenCmd::Revoke { token, .. } => {
                        if dispatch_server::identity::revoke_token(s.as_ref(), &actor, &token, clock.now()).await? {
                            eprintln!("token {token} revoked");
                        } else {
                            eprintln!("token {token} was already revoked");
                        }
                    }
                    TokenCmd::List { .. } => security_cli::token_list(s.as_ref()).await?,
                }
                Ok(())
            }
            .await;
            s.close().await;
            result
        }
        Cmd::User { command } => {
            init_logging(LogFormat::Human, "warn");
            let store = security_cli::store_args_of_user(&command);
            let cfg = Config::load(store.config.as_deref(), &overrides(store, None, None))?;
            let s = app::open_store(&cfg).await?;
            let result = security_cli::user(s.as_ref(), command).await;
            s.close().await;
            result
        }
        Cmd::Audit { command } => {
            init_logging(LogFormat::Human, "warn");
            let security_cli::AuditCmd::Verify { store, .. } = &command;
            let cfg = Config::load(store.config.as_deref(), &overrides(store, None, None))?;
            let s = app::open_store(&cfg).await?;
            let result = security_cli::audit(s.as_ref(), command).await;
            s.close().await;
            if !result? {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Key { command: security_cli::KeyCmd::Generate { key_version } } => {
            println!("{}", dispatch_integrations::vault::Vault::generate_entry(key_version));
            Ok(())
        }
        Cmd::Secret { command } => {
            init_logging(LogFormat::Human, "warn");
            let store = security_cli::store_args_of_secret(&command);
            let cfg = Config::load(store.config.as_deref(), &overrides(store, None, None))?;
            let s = app::open_store(&cfg).await?;
            let result = security_cli::secret(s.as_ref(), command).await;
            s.close().await;
            result
        }
        Cmd::Permissions { markdown } => {
            if markdown {
                print!("{}", dispatch_core::access::matrix_markdown());
            } else {
                for p in dispatch_core::access::Permission::ALL {
                    let roles: Vec<&str> = dispatch_core::Role::ALL
                        .iter()
                        .filter(|r| dispatch_core::access::role_allows(**r, *p))
                        .map(|r| r.code())
                        .collect();
                    println!("{}: {}", p.code(), roles.join(", "));
                }
            }
            Ok(())
        }
        Cmd::Policy { command } => {
            init_logging(LogFormat::Human, "warn");
            match command {
                PolicyCmd::Check { file, config } => {
                    let cfg = match &config {
                        Some(c) => Some(Config::load(Some(c), &Overrides::default())?),
                        None => None,
                    };
                    policy_cli::check(&file, cfg.as_ref())
                }
                PolicyCmd::Replay { candidate, since, json, examples, store } => {
                    let cfg = Config::load(store.config.as_deref(), &overrides(&store, None, None))?;
                    let since = since.as_deref().map(parse_since).transpose()?;
                    policy_cli::replay(policy_cli::ReplayArgs { candidate: &candidate, since, json, examples }, &cfg)
                        .await
                }
                PolicyCmd::GenerateDecisions { orders, per_order, seed, start, store } => {
                    let cfg = Config::load(store.config.as_deref(), &overrides(&store, None, None))?;
                    let start = chrono::DateTime::parse_from_rfc3339(&start)
                        .with_context(|| format!("--start `{start}` is not an RFC 3339 instant"))?
                        .with_timezone(&chrono::Utc);
                    let args = policy_cli::GenerateArgs { orders, per_order, seed, start };
                    policy_cli::generate_decisions(args, &cfg).await
                }
                PolicyCmd::Explain { order_id, json, store } => {
                    let cfg = Config::load(store.config.as_deref(), &overrides(&store, None, None))?;
                    policy_cli::explain(&order_id, &cfg, json).await
                }
            }
        }
        Cmd::Odoo { command } => {
            init_logging(LogFormat::Human, "warn");
            let store_args = match &command {
                OdooCmd::Check { store } | OdooCmd::Sync { store, .. } => store,
            };
            let cfg = Config::load(store_args.config.as_deref(), &overrides(store_args, None, None))?;
            let s = app::open_store(&cfg).await?;
            let state = app::state(&cfg, s.clone(), clock)?;
            let result = match command {
                OdooCmd::Check { .. } => odoo::check(&cfg, &state).await.and_then(|ok| {
                    if ok { Ok(()) } else { Err(anyhow::anyhow!("Odoo is not ready for dispatchd (see above)")) }
                }),
                OdooCmd::Sync { .. } => odoo::sync_once(&cfg, &state).await,
            };
            s.close().await;
            result
        }
        Cmd::Model { command } => {
            init_logging(LogFormat::Human, "warn");
            let store_args = match &command {
                ModelCmd::Train { store, .. }
                | ModelCmd::List { store }
                | ModelCmd::Promote { store, .. }
                | ModelCmd::Rollback { store } => store,
            };
            let cfg = Config::load(store_args.config.as_deref(), &overrides(store_args, None, None))?;
            let s = app::open_store(&cfg).await?;
            let result = match command {
                ModelCmd::Train { iterations, holdout, .. } => {
                    let opts =
                        dispatch_intel::TrainOptions { iterations, holdout_fraction: holdout, ..Default::default() };
                    model_cli::train_cmd(s.as_ref(), &opts, clock.now()).await
                }
                ModelCmd::List { .. } => model_cli::list_cmd(s.as_ref()).await,
                ModelCmd::Promote { model, .. } => model_cli::promote_cmd(s.as_ref(), &model, clock.now()).await,
                ModelCmd::Rollback { .. } => model_cli::rollback_cmd(s.as_ref(), clock.now()).await,
            };
            s.close().await;
            result
        }
        Cmd::History { command } => {
            init_logging(LogFormat::Human, "warn");
            let store_args = match &command {
                HistoryCmd::Import { store, .. } | HistoryCmd::Generate { store, .. } => store,
            };
            let cfg = Config::load(store_args.config.as_deref(), &overrides(store_args, None, None))?;
            let s = app::open_store(&cfg).await?;
            let result = match command {
                HistoryCmd::Import { file, .. } => model_cli::import_csv(s.as_ref(), &file).await,
                HistoryCmd::Generate { seed, days, scale, .. } => {
                    let end = clock.now().date_naive() - chrono::Duration::days(1);
                    let spec = dispatch_intel::HistorySpec { seed, end, days, scale };
                    model_cli::generate(s.as_ref(), &spec).await.map(|n| eprintln!("generated {n} dispatch records"))
                }
            };
            s.close().await;
            result
        }
        Cmd::DeadLetters { command } => {
            init_logging(LogFormat::Human, "warn");
            let store_args = match &command {
                DeadLetterCmd::List { store, .. } | DeadLetterCmd::Retry { store, .. } => store,
            };
            let cfg = Config::load(store_args.config.as_deref(), &overrides(store_args, None, None))?;
            let s = app::open_store(&cfg).await?;
            let result: Result<()> = match command {
                DeadLetterCmd::List { limit, .. } => s.dead_letters(limit).await.map_err(Into::into).map(|items| {
                    for d in items {
                        println!("{}", serde_json::to_string(&d).unwrap_or_default());
                    }
                }),
                DeadLetterCmd::Retry { id, .. } => match s.retry_dead_letter(id, clock.now()).await {
                    Ok(Some(d)) => {
                        println!("dead letter {} ({}) queued again", d.id, d.dedupe_key);
                        Ok(())
                    }
                    Ok(None) => Err(anyhow::anyhow!("no dead letter with id {id}; see `dispatchd dead-letters list`")),
                    Err(e) => Err(e.into()),
                },
            };
            s.close().await;
            result
        }
        Cmd::Migrate { store } => {
            init_logging(LogFormat::Human, "info,sqlx=warn");
            let cfg = Config::load(store.config.as_deref(), &overrides(&store, None, None))?;
            let s = app::open_store(&cfg).await.context("migration failed")?;
            s.close().await;
            eprintln!("database at {} is up to date", cfg.database()?);
            Ok(())
        }
    }
}
