//! `dispatchd user|token|audit|key|secret|permissions`: identities, the audit chain, the master
//! key ring and sealed secrets, from the command line. Every change is recorded in the audit
//! log as done by `cli:<operating-system user>`.

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use clap::Subcommand;
use dispatch_core::audit::AuditDraft;
use dispatch_integrations::vault::Vault;
use dispatch_server::auth::parse_roles;
use dispatch_server::identity;
use dispatch_store::{SealedSecret, Store};

use crate::StoreArgs;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user. With --password-stdin the first line of stdin is the console password.
    Create {
        name: String,
        /// Comma-separated roles, e.g. dispatcher,supervisor.
        #[arg(long)]
        roles: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user: their tokens and console sessions stop working on the next request.
    Disable {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled user again.
    Enable {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace a user's roles (a role taken away is gone from all their tokens at once).
    Roles {
        name: String,
        #[arg(long)]
        roles: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's console password from the first line of stdin.
    Password {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Users, one JSON object per line (never a password hash).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the whole chain: exit 0 when intact, 1 naming the first changed, removed or
    /// reordered entry.
    Verify {
        /// Also check every order event against the digest its entry committed to.
        #[arg(long)]
        events: bool,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Print a new random master key entry `<version>:<base64>` for DISPATCHD_MASTER_KEY or the
    /// key file (append it to the ring to rotate; the highest version seals).
    Generate {
        /// The version number of the new key (one higher than the ring's highest to rotate).
        #[arg(long, default_value_t = 1)]
        key_version: u32,
    },
}

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Store a secret (the first line of stdin) sealed with the active master key.
    Set {
        /// e.g. `carrier:dhl:api_key`, `webhook:odoo`, `smtp:password`.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Names, key versions and update times (never values).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-seal every secret sealed with an older key version under the active one (step 3 of
    /// a key rotation; the old version can be dropped afterwards).
    Reseal {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Who the CLI acts as in the audit log.
pub fn cli_actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

fn read_line_stdin(what: &str) -> Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).with_context(|| format!("cannot read the {what} from stdin"))?;
    let line = s.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        bail!("no {what} on stdin");
    }
    Ok(line)
}

fn user_json(u: &dispatch_store::UserRecord) -> serde_json::Value {
    serde_json::json!({
        "id": u.id, "name": u.name, "roles": u.roles, "console_login": u.password_hash.is_some(),
        "created_at": u.created_at, "disabled_at": u.disabled_at,
    })
}

pub async fn user(s: &dyn Store, cmd: UserCmd) -> Result<()> {
    let actor = cli_actor();
    let now = Utc::now();
    match cmd {
        UserCmd::Create { name, roles, password_stdin, .. } => {
            let roles = parse_roles(&roles)?;
            let password = if password_stdin { Some(read_line_stdin("password")?) } else { None };
            let u = identity::create_user(s, &actor, &name, &roles, password.as_deref(), now).await?;
            println!("{}", user_json(&u));
        }
        UserCmd::Disable { name, .. } => {
            identity::set_disabled(s, &actor, &name, true, now).await?;
            eprintln!("user {name} disabled; their tokens and sessions no longer work");
        }
        UserCmd::Enable { name, .. } => {
            identity::set_disabled(s, &actor, &name, false, now).await?;
            eprintln!("user {name} enabled");
        }
        UserCmd::Roles { name, roles, .. } => {
            let roles = parse_roles(&roles)?;
            let u = identity::set_roles(s, &actor, &name, &roles).await?;
            println!("{}", user_json(&u));
        }
        UserCmd::Password { name, .. } => {
            let password = read_line_stdin("password")?;
            identity::set_password(s, &actor, &name, &password).await?;
            eprintln!("password of {name} changed");
        }
        UserCmd::List { .. } => {
            for u in s.users().await? {
                println!("{}", user_json(&u));
            }
        }
    }
    Ok(())
}

pub async fn token_list(s: &dyn Store) -> Result<()> {
    let users = s.users().await?;
    for t in s.tokens().await? {
        let user = t.user_id.as_ref().and_then(|id| users.iter().find(|u| &u.id == id)).map(|u| u.name.clone());
        println!(
            "{}",
            serde_json::json!({
                "id": t.id, "name": t.name, "prefix": t.prefix, "roles": t.roles, "user": user,
                "created_at": t.created_at, "expires_at": t.expires_at, "revoked_at": t.revoked_at,
                "last_used_at": t.last_used_at,
            })
        );
    }
    Ok(())
}

pub async fn audit(s: &dyn Store, cmd: AuditCmd) -> Result<bool> {
    let AuditCmd::Verify { events, json, .. } = cmd;
    let (total, _) = s.audit_head().await?;
    let bar = crate::app::progress(u64::try_from(total).unwrap_or(0), "verifying");
    let report = dispatch_store::security::verify_chain(s, events, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        match &report.problem {
            None => println!(
                "audit chain intact: {} entries{}; head {} {}",
                report.checked,
                if events { format!(", {} events match their digests", report.events_checked) } else { String::new() },
                report.head_seq,
                report.head_hash
            ),
            Some(p) => println!("audit chain BROKEN: {p} (entries 1 to {} are intact)", report.head_seq),
        }
    }
    Ok(report.problem.is_none())
}

fn vault() -> Result<Vault> {
    Vault::from_env()?.ok_or_else(|| {
        anyhow!("no master key: set DISPATCHD_MASTER_KEY or DISPATCHD_MASTER_KEY_FILE (make one with `dispatchd key generate`)")
    })
}

fn secret_draft(action: &str, name: &str, version: u32) -> AuditDraft {
    AuditDraft {
        at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
        actor: cli_actor(),
        roles: vec![],
        request_id: None,
        action: action.to_string(),
        subject: format!("secret:{name}"),
        before: None,
        // The key version only: never the value, not even a hash of it.
        after: Some(serde_json::json!({ "key_version": version }).to_string()),
    }
}

pub async fn secret(s: &dyn Store, cmd: SecretCmd) -> Result<()> {
    match cmd {
        SecretCmd::Set { name, .. } => {
            let v = vault()?;
            let value = read_line_stdin("secret")?;
            let sealed = v.seal(&format!("secret:{name}"), &value);
            let rec =
                SealedSecret { name: name.clone(), sealed, key_version: v.active_version(), updated_at: Utc::now() };
            s.put_secret(&rec, secret_draft("secret.set", &name, v.active_version())).await?;
            eprintln!("secret {name} stored, sealed with key version {}", v.active_version());
        }
        SecretCmd::List { .. } => {
            for x in s.secrets().await? {
                println!(
                    "{}",
                    serde_json::json!({"name": x.name, "key_version": x.key_version, "updated_at": x.updated_at})
                );
            }
        }
        SecretCmd::Reseal { .. } => {
            let v = vault()?;
            let mut n = 0;
            for x in s.secrets().await? {
                if !v.needs_reseal(&x.sealed) {
                    continue;
                }
                let purpose = format!("secret:{}", x.name);
                let plain = v.open(&purpose, &x.sealed).with_context(|| format!("cannot open secret {}", x.name))?;
                let sealed = v.seal(&purpose, plain.expose());
                let rec = SealedSecret { sealed, key_version: v.active_version(), updated_at: Utc::now(), ..x };
                s.put_secret(&rec, secret_draft("secret.resealed", &rec.name, v.active_version())).await?;
                n += 1;
            }
            eprintln!("{n} secret(s) re-sealed with key version {}", v.active_version());
        }
    }
    Ok(())
}

/// Every stored secret, opened with the master key ring, by name (for wiring carriers, SMTP and
/// Odoo at start-up). A secret stored under an environment variable's name stands in for it.
pub async fn opened_secrets(s: &dyn Store) -> Result<std::collections::HashMap<String, String>> {
    let stored = s.secrets().await?;
    let mut out = std::collections::HashMap::new();
    if stored.is_empty() {
        return Ok(out);
    }
    let v = vault().context("the database holds sealed secrets")?;
    for x in stored {
        let plain = v
            .open(&format!("secret:{}", x.name), &x.sealed)
            .with_context(|| format!("cannot open secret {}", x.name))?;
        if v.needs_reseal(&x.sealed) {
            tracing::warn!(secret = %x.name, "secret is sealed with an older key version; run `dispatchd secret reseal`");
        }
        out.insert(x.name, plain.expose().to_string());
    }
    Ok(out)
}

pub fn store_args_of_user(cmd: &UserCmd) -> &StoreArgs {
    match cmd {
        UserCmd::Create { store, .. }
        | UserCmd::Disable { store, .. }
        | UserCmd::Enable { store, .. }
        | UserCmd::Roles { store, .. }
        | UserCmd::Password { store, .. }
        | UserCmd::List { store } => store,
    }
}

pub fn store_args_of_secret(cmd: &SecretCmd) -> &StoreArgs {
    match cmd {
        SecretCmd::Set { store, .. } | SecretCmd::List { store } | SecretCmd::Reseal { store } => store,
    }
}
