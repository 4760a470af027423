//! `odoo-double`: the Odoo test double as a process, for trying dispatchd's connector by hand
//! and for tests that want a separate binary. See the library for what it speaks.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "odoo-double", about = "A faithful Odoo test double (JSON-RPC and JSON-2)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8069")]
    listen: std::net::SocketAddr,
    /// Database name clients must use.
    #[arg(long, default_value = "odoo")]
    db: String,
    /// Major version to report (16, 17, 18, 19).
    #[arg(long, default_value_t = 17)]
    major: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let running = odoo_double::start(odoo_double::DoubleConfig { db: args.db, major: args.major }, listener).await?;
    // The address on stdout, so a test that asked for port 0 learns where to connect.
    println!("{}", running.url());
    tokio::signal::ctrl_c().await?;
    running.stop();
    Ok(())
}
