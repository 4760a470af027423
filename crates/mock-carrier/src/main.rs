//! `mock-carrier [--listen ADDR] [--fault KEY=VALUE ...]`: the carrier simulator.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use dispatch_integrations::Secret;
use mock_carrier::{Faults, MockConfig, parse_fault};

#[derive(Parser)]
#[command(name = "mock-carrier", version, about = "An EasyPost-shaped carrier simulator with fault injection")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Carrier name shown in trackers.
    #[arg(long, default_value = "MockPost")]
    carrier: String,
    /// Only this API key is accepted (any non-empty key when unset).
    #[arg(long, env = "MOCK_CARRIER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Where to send tracking webhooks, e.g. http://127.0.0.1:8080/webhooks/carriers/mockpost.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Secret the webhooks are signed with.
    #[arg(long, env = "MOCK_CARRIER_WEBHOOK_SECRET", hide_env_values = true, default_value = "mock-webhook-secret")]
    webhook_secret: String,
    /// Real seconds per simulated ten minutes between scans (0.002: a scan every 1.2 s).
    #[arg(long, default_value_t = 0.002)]
    time_scale: f64,
    /// A fault, repeatable: latency=MIN..MAX (ms), error-rate=R, errors=500,503,429, retry-after=S,
    /// timeout-rate=R, timeout=MS, reject-rate=R, down=true, outage=FROM..TO (ms since start),
    /// duplicate-rate=R, out-of-order-rate=R, unknown-status-rate=R. Change them at run time
    /// with PUT /admin/faults.
    #[arg(long = "fault", value_name = "KEY=VALUE")]
    faults: Vec<String>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut faults = Faults::default();
    for f in &cli.faults {
        parse_fault(f, &mut faults).map_err(anyhow::Error::msg)?;
    }
    let cfg = MockConfig {
        carrier: cli.carrier,
        api_key: cli.api_key.map(Secret::new),
        webhook_url: cli.webhook_url,
        webhook_secret: Secret::new(cli.webhook_secret),
        time_scale: cli.time_scale,
        faults,
    };
    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("cannot listen on {}", cli.listen))?;
    let server = mock_carrier::start(cfg, listener).await?;
    println!("mock-carrier listening on {}", server.url());
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
    Ok(())
}
