//! Notifications, the shell: templates (minijinja, per locale, validated at load with
//! line:column errors), the fan-out of an outbound event into notices, and their delivery by
//! email (SMTP with lettre) or webhook. Every notice is recorded with its status and shown on
//! the order's timeline; a mail server outage is retried and recorded, and never touches the
//! order's own path (notices go through the outbox after the order write committed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dispatch_core::notify::{Audience, NoticeKind, Rule, customer_recipient, fires, pick_locale, suppressed};
use dispatch_core::outbound::{EventType, Message, next_attempt_after};
use dispatch_server::clock::Clock;
use dispatch_store::{Job, NewJob, NotificationRecord, Store, StoreError};
use lettre::AsyncTransport;
use serde::{Deserialize, Serialize};

pub const SEND_NOTIFICATION: &str = "send_notification";

/// The templates shipped in the repository (`templates/notifications/<locale>/<kind>.txt`).
macro_rules! shipped {
    ($($loc:literal / $kind:literal),* $(,)?) => {
        &[$(($loc, $kind, include_str!(concat!("../../../templates/notifications/", $loc, "/", $kind, ".txt")))),*]
    };
}
const SHIPPED: &[(&str, &str, &str)] = shipped!(
    "en" / "dispatch_confirmation",
    "en" / "delay_notice",
    "en" / "proof_of_dispatch",
    "en" / "proof_of_delivery",
    "en" / "exception_alert",
    "nl" / "dispatch_confirmation",
    "nl" / "delay_notice",
    "nl" / "proof_of_dispatch",
    "nl" / "proof_of_delivery",
    "nl" / "exception_alert",
    "de" / "dispatch_confirmation",
    "de" / "delay_notice",
    "de" / "proof_of_dispatch",
    "de" / "proof_of_delivery",
    "de" / "exception_alert",
);

/// `[notifications]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    pub enabled: bool,
    /// `From:` of every mail.
    pub from: String,
    /// Addresses of the `internal` audience (exception alerts).
    pub internal_recipients: Vec<String>,
    /// Language when a customer's is unset or has no templates.
    pub default_locale: String,
    /// A directory with `<locale>/<template>.txt` files replacing the shipped ones.
    pub templates_dir: Option<PathBuf>,
    pub smtp: Option<SmtpConfig>,
    /// The rules; the defaults (see docs/notifications.md) when none are given.
    pub rules: Vec<RuleConfig>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            enabled: false,
            from: "dispatchd <dispatch@localhost>".into(),
            internal_recipients: vec![],
            default_locale: "en".into(),
            templates_dir: None,
            smtp: None,
            rules: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `none` (a local relay), `starttls` or `tls`.
    #[serde(default = "default_tls")]
    pub tls: String,
    /// The password comes from `DISPATCHD_SMTP_PASSWORD`, never from the file.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_ms: u64,
}

fn default_smtp_port() -> u16 {
    25
}
fn default_tls() -> String {
    "starttls".into()
}
fn default_smtp_timeout() -> u64 {
    10_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Event type, e.g. `shipment.dispatched`.
    pub event: String,
    /// `dispatch_confirmation`, `delay_notice`, `proof_of_dispatch`, `proof_of_delivery`,
    /// `exception_alert`.
    pub kind: String,
    /// Template name; the kind's name when unset.
    #[serde(default)]
    pub template: Option<String>,
    /// `email` or `webhook`.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// `customer`, `internal`, or an address (a URL for the webhook channel).
    pub to: String,
    #[serde(default = "default_window")]
    pub window_minutes: u32,
    #[serde(default)]
    pub hold_reasons: Vec<String>,
    #[serde(default)]
    pub tracking_statuses: Vec<String>,
}

fn default_channel() -> String {
    "email".into()
}
fn default_window() -> u32 {
    24 * 60
}

fn rule(event: &str, kind: &str, to: &str) -> RuleConfig {
    RuleConfig {
        event: event.into(),
        kind: kind.into(),
        template: None,
        channel: "email".into(),
        to: to.into(),
        window_minutes: default_window(),
        hold_reasons: vec![],
        tracking_statuses: vec![],
    }
}

/// The rules used when none are configured.
pub fn default_rules() -> Vec<RuleConfig> {
    let mut delay = rule("order.held", "delay_notice", "customer");
    delay.hold_reasons =
        vec!["cutoff_missed".into(), "stock_short".into(), "stock_unallocated".into(), "carrier_unavailable".into()];
    let mut tracking_delay = rule("tracking.updated", "delay_notice", "customer");
    tracking_delay.tracking_statuses = vec!["exception".into(), "attempt_failed".into()];
    vec![
        rule("shipment.booked", "dispatch_confirmation", "customer"),
        delay,
        tracking_delay,
        rule("shipment.dispatched", "proof_of_dispatch", "customer"),
        rule("order.delivered", "proof_of_delivery", "customer"),
        rule("order.exception", "exception_alert", "internal"),
        rule("dead_letter.created", "exception_alert", "internal"),
        rule("alert.raised", "exception_alert", "internal"),
    ]
}

/// A template problem, located.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// One template: subject and body, compiled.
struct Compiled {
    subject: String,
    body: String,
}

/// Every template by (name, locale), compiled and checked.
pub struct Templates {
    env: minijinja::Environment<'static>,
    by_name: BTreeMap<(String, String), Compiled>,
}

fn locate(file: &str, src: &str, line_offset: usize, e: &minijinja::Error) -> TemplateError {
    let (line, column) = match (e.line(), e.range()) {
        (_, Some(r)) => {
            let before = &src[..r.start.min(src.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, col)
        }
        (Some(l), None) => (l, 1),
        (None, None) => (1, 1),
    };
    TemplateError {
        file: file.to_string(),
        line: line + line_offset,
        column,
        message: e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind())),
    }
}

impl Templates {
    /// The shipped templates, replaced by those in `dir` where present.
    pub fn load(dir: Option<&Path>) -> Result<Templates, Vec<TemplateError>> {
        let mut sources: Sources = BTreeMap::new();
        for (loc, kind, src) in SHIPPED {
            sources.insert((kind.to_string(), loc.to_string()), (format!("{loc}/{kind}.txt"), src.to_string()));
        }
        let mut errors = Vec::new();
        if let Some(dir) = dir {
            match read_dir(dir) {
                Ok(files) => sources.extend(files),
                Err(e) => errors.push(e),
            }
        }
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut by_name = BTreeMap::new();
        for ((name, loc), (file, src)) in sources {
            let Some((first, body)) = src.split_once('\n') else {
                errors.push(TemplateError {
                    file,
                    line: 1,
                    column: 1,
                    message: "needs a `Subject:` line and a body".into(),
                });
                continue;
            };
            let Some(subject) = first.strip_prefix("Subject:") else {
                errors.push(TemplateError {
                    file,
                    line: 1,
                    column: 1,
                    message: "the first line must be `Subject: ...`".into(),
                });
                continue;
            };
            let (sname, bname) = (format!("{name}.{loc}.subject"), format!("{name}.{loc}.body"));
            if let Err(e) = env.add_template_owned(sname.clone(), subject.trim().to_string()) {
                // The subject starts after `Subject: ` on line 1.
                let mut err = locate(&file, subject.trim(), 0, &e);
                err.column += first.len() - subject.trim_start().len();
                errors.push(err);
            }
            if let Err(e) = env.add_template_owned(bname.clone(), body.to_string()) {
                errors.push(locate(&file, body, 1, &e));
            }
            by_name.insert((name, loc), Compiled { subject: sname, body: bname });
        }
        if errors.is_empty() { Ok(Templates { env, by_name }) } else { Err(errors) }
    }

    pub fn locales(&self, name: &str) -> Vec<&str> {
        self.by_name.keys().filter(|(n, _)| n == name).map(|(_, l)| l.as_str()).collect()
    }

    pub fn has(&self, name: &str, locale: &str) -> bool {
        self.by_name.contains_key(&(name.to_string(), locale.to_string()))
    }

    /// (subject, body).
    pub fn render(&self, name: &str, locale: &str, ctx: &serde_json::Value) -> Result<(String, String), String> {
        let c = self.by_name.get(&(name.to_string(), locale.to_string())).ok_or("no such template")?;
        let render = |t: &str| {
            self.env.get_template(t).and_then(|t| t.render(ctx)).map_err(|e| format!("template {name}/{locale}: {e:#}"))
        };
        Ok((render(&c.subject)?.trim().to_string(), render(&c.body)?))
    }
}

/// (template name, locale) → (file shown in errors, source).
type Sources = BTreeMap<(String, String), (String, String)>;

fn read_dir(dir: &Path) -> Result<Sources, TemplateError> {
    let fail = |m: String| TemplateError { file: dir.display().to_string(), line: 1, column: 1, message: m };
    let mut out = BTreeMap::new();
    for loc in std::fs::read_dir(dir).map_err(|e| fail(e.to_string()))? {
        let loc = loc.map_err(|e| fail(e.to_string()))?;
        if !loc.path().is_dir() {
            continue;
        }
        let locale = loc.file_name().to_string_lossy().to_string();
        for f in std::fs::read_dir(loc.path()).map_err(|e| fail(e.to_string()))? {
            let p = f.map_err(|e| fail(e.to_string()))?.path();
            if p.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            let name = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let src = std::fs::read_to_string(&p).map_err(|e| fail(format!("{}: {e}", p.display())))?;
            out.insert((name, locale.clone()), (p.display().to_string(), src));
        }
    }
    Ok(out)
}

/// A rule as used: checked against the catalogue and the templates.
struct ActiveRule {
    rule: Rule,
    template: String,
    channel: String,
}

enum Mailer {
    Smtp(lettre::AsyncSmtpTransport<lettre::Tokio1Executor>),
    None,
}

pub struct Notifier {
    rules: Vec<ActiveRule>,
    templates: Templates,
    cfg: NotificationsConfig,
    mailer: Mailer,
    http: reqwest::Client,
}

/// What became of a `send_notification` job.
pub enum SendOutcome {
    Done(Option<String>),
    Retry { at: DateTime<Utc>, error: String },
    Dead(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Notice {
    notification_id: i64,
    channel: String,
    to: String,
    locale: String,
    subject: String,
    body: String,
    kind: String,
    order_id: Option<String>,
}

impl Notifier {
    /// Checks the rules and templates (every error at once, located) and builds the mailer.
    pub fn new(cfg: NotificationsConfig) -> Result<Notifier, Vec<String>> {
        let templates = Templates::load(cfg.templates_dir.as_deref())
            .map_err(|errs| errs.iter().map(|e| format!("notification template {e}")).collect::<Vec<_>>())?;
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        let configured = if cfg.rules.is_empty() { default_rules() } else { cfg.rules.clone() };
        for (i, r) in configured.iter().enumerate() {
            let at = format!("notifications.rules[{i}]");
            let Some(event) = EventType::parse(&r.event) else {
                errors.push(format!("{at}.event: unknown event type `{}`", r.event));
                continue;
            };
            let Some(kind) = NoticeKind::ALL.iter().copied().find(|k| k.code() == r.kind) else {
                let known: Vec<&str> = NoticeKind::ALL.iter().map(|k| k.code()).collect();
                errors.push(format!("{at}.kind: unknown kind `{}`; known: {}", r.kind, known.join(", ")));
                continue;
            };
            let template = r.template.clone().unwrap_or_else(|| r.kind.clone());
            if !templates.has(&template, &cfg.default_locale) {
                errors.push(format!(
                    "{at}.template: no template `{template}` in the default locale `{}`",
                    cfg.default_locale
                ));
            }
            if !matches!(r.channel.as_str(), "email" | "webhook") {
                errors.push(format!("{at}.channel: `{}` is neither `email` nor `webhook`", r.channel));
            }
            if r.channel == "webhook" && !(r.to.starts_with("http://") || r.to.starts_with("https://")) {
                errors.push(format!("{at}.to: the webhook channel needs an http(s) URL"));
            }
            if r.channel == "email" && cfg.smtp.is_none() {
                errors.push(format!("{at}: the email channel needs [notifications.smtp]"));
            }
            rules.push(ActiveRule {
                rule: Rule {
                    event,
                    kind,
                    audience: Audience::parse(&r.to),
                    window: chrono::Duration::minutes(i64::from(r.window_minutes)),
                    hold_reasons: r.hold_reasons.clone(),
                    tracking_statuses: r.tracking_statuses.clone(),
                },
                template,
                channel: r.channel.clone(),
            });
        }
        let mailer = match &cfg.smtp {
            Some(s) => match smtp(s) {
                Ok(m) => Mailer::Smtp(m),
                Err(e) => {
                    errors.push(format!("notifications.smtp: {e}"));
                    Mailer::None
                }
            },
            None => Mailer::None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Notifier { rules, templates, cfg, mailer, http: dispatch_integrations::outbound::client() })
    }

    /// The notices `m` causes: each recorded (queued, or suppressed with the reason) and, when
    /// it is to be sent, a `send_notification` job.
    pub async fn plan(&self, m: &Message, store: &dyn Store, now: DateTime<Utc>) -> Result<Vec<NewJob>, StoreError> {
        let order = match m.order_id() {
            Some(id) => store.order(id).await?,
            None => None,
        };
        let mut jobs = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !fires(&r.rule, m) {
                continue;
            }
            let kind = r.rule.kind.code();
            // (address, requested locale) per recipient; a skipped customer is recorded.
            let mut recipients: Vec<(String, Option<String>)> = Vec::new();
            let mut skipped: Option<&str> = None;
            match &r.rule.audience {
                Audience::Customer => match order.as_ref().map(|o| customer_recipient(&o.facts.customer)) {
                    Some(Ok(x)) => recipients.push(x),
                    Some(Err(dispatch_core::notify::Skip::OptedOut)) => skipped = Some("the customer opted out"),
                    Some(Err(dispatch_core::notify::Skip::NoAddress)) => {
                        skipped = Some("the customer has no email address")
                    }
                    None => skipped = Some("no order"),
                },
                Audience::Internal => recipients.extend(self.cfg.internal_recipients.iter().map(|a| (a.clone(), None))),
                Audience::Fixed(a) => recipients.push((a.clone(), None)),
            }
            let order_id = order.as_ref().map(|o| o.id.clone());
            if let Some(why) = skipped {
                // Recorded so the timeline says why no notice went out.
                let rec = self.record(m, i, kind, &r.channel, "customer", "-", "suppressed", Some(why), now);
                store.insert_notification(&rec).await?;
                continue;
            }
            let is_suppressed = match &order_id {
                Some(id) => suppressed(store.last_notification_at(id, kind).await?, now, r.rule.window),
                None => false,
            };
            for (to, wanted) in recipients {
                let locale =
                    pick_locale(wanted.as_deref(), &self.templates.locales(&r.template), &self.cfg.default_locale);
                let ctx = context(m, order.as_ref(), &locale);
                let (status, rendered, error) = if is_suppressed {
                    ("suppressed", None, Some(format!("a {kind} went out for this order within the window")))
                } else {
                    match self.templates.render(&r.template, &locale, &ctx) {
                        Ok(x) => ("queued", Some(x), None),
                        Err(e) => ("failed", None, Some(e)),
                    }
                };
                let mut rec = self.record(m, i, kind, &r.channel, &to, &locale, status, error.as_deref(), now);
                if let Some((subject, _)) = &rendered {
                    rec.subject = subject.clone();
                }
                let Some(id) = store.insert_notification(&rec).await? else { continue };
                if let Some((subject, body)) = rendered {
                    let notice = Notice {
                        notification_id: id,
                        channel: r.channel.clone(),
                        to,
                        locale,
                        subject,
                        body,
                        kind: kind.to_string(),
                        order_id: order_id.clone(),
                    };
                    jobs.push(NewJob {
                        kind: SEND_NOTIFICATION.into(),
                        order_id: order_id.clone(),
                        dedupe_key: format!("{SEND_NOTIFICATION}:{}", rec.dedupe_key),
                        payload: serde_json::to_value(&notice)?,
                        run_at: now,
                    });
                }
            }
        }
        Ok(jobs)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        m: &Message,
        rule: usize,
        kind: &str,
        channel: &str,
        to: &str,
        locale: &str,
        status: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> NotificationRecord {
        NotificationRecord {
            id: 0,
            order_id: m.order_id().map(str::to_string),
            kind: kind.into(),
            channel: channel.into(),
            recipient: to.into(),
            locale: locale.into(),
            subject: String::new(),
            status: status.into(),
            attempts: 0,
            last_error: error.map(str::to_string),
            dedupe_key: format!("{}:{rule}:{to}", m.id),
            created_at: now,
            updated_at: now,
        }
    }

    /// Sends one notice; records the outcome on the notification.
    pub async fn send(&self, job: &Job, store: &dyn Store, clock: &dyn Clock) -> Result<SendOutcome, StoreError> {
        let n: Notice = match serde_json::from_value(job.payload.clone()) {
            Ok(n) => n,
            Err(e) => return Ok(SendOutcome::Dead(format!("unreadable notice: {e}"))),
        };
        let result = match n.channel.as_str() {
            "email" => self.mail(&n).await,
            _ => self.post(&n).await,
        };
        let now = clock.now();
        match result {
            Ok(()) => {
                metrics::counter!("dispatchd_notifications_total", "channel" => n.channel.clone(), "outcome" => "sent")
                    .increment(1);
                store.update_notification(n.notification_id, "sent", job.attempts, None, now).await?;
                Ok(SendOutcome::Done(None))
            }
            Err(error) => {
                metrics::counter!("dispatchd_notifications_total", "channel" => n.channel.clone(), "outcome" => "failed").increment(1);
                let attempts = u32::try_from(job.attempts.max(1)).unwrap_or(u32::MAX);
                match next_attempt_after(attempts) {
                    Some(d) => {
                        tracing::warn!(notification = n.notification_id, %error, "notification not sent; will retry");
                        store
                            .update_notification(n.notification_id, "retrying", job.attempts, Some(&error), now)
                            .await?;
                        Ok(SendOutcome::Retry { at: now + d, error })
                    }
                    None => {
                        store.update_notification(n.notification_id, "failed", job.attempts, Some(&error), now).await?;
                        Ok(SendOutcome::Dead(error))
                    }
                }
            }
        }
    }

    async fn mail(&self, n: &Notice) -> Result<(), String> {
        let Mailer::Smtp(transport) = &self.mailer else { return Err("no SMTP server configured".into()) };
        let from = self.cfg.from.parse().map_err(|e| format!("from address: {e}"))?;
        let to = n.to.parse().map_err(|e| format!("recipient address {}: {e}", n.to))?;
        let mail = lettre::Message::builder()
            .from(from)
            .to(to)
            .subject(n.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .header(ContentLanguage(n.locale.clone()))
            .body(n.body.clone())
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        transport.send(mail).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
    }

    async fn post(&self, n: &Notice) -> Result<(), String> {
        let body = serde_json::json!({
            "kind": n.kind, "order_id": n.order_id, "locale": n.locale, "subject": n.subject, "text": n.body,
        });
        let r = self
            .http
            .post(&n.to)
            .timeout(Duration::from_secs(15))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("webhook: {e}"))?;
        if r.status().is_success() { Ok(()) } else { Err(format!("webhook answered HTTP {}", r.status().as_u16())) }
    }
}

/// `Content-Language` of a notice: the locale it was written in.
#[derive(Clone)]
struct ContentLanguage(String);

impl lettre::message::header::Header for ContentLanguage {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Content-Language")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ContentLanguage(s.to_string()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

fn smtp(s: &SmtpConfig) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::authentication::Credentials;
    type T = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;
    let mut b = match s.tls.as_str() {
        "none" => T::builder_dangerous(&s.host),
        "starttls" => T::starttls_relay(&s.host).map_err(|e| e.to_string())?,
        "tls" => T::relay(&s.host).map_err(|e| e.to_string())?,
        other => return Err(format!("tls = `{other}`: use none, starttls or tls")),
    };
    b = b.port(s.port).timeout(Some(Duration::from_millis(s.timeout_ms.max(1))));
    if let Some(user) = &s.username {
        let password = std::env::var("DISPATCHD_SMTP_PASSWORD")
            .map_err(|_| "a username is set but DISPATCHD_SMTP_PASSWORD is not".to_string())?;
        b = b.credentials(Credentials::new(user.clone(), password));
    }
    Ok(b.build())
}

/// What a template sees: `order` (or none), `event` (the payload), `event_type`,
/// `timestamp`, `summary` (one line) and `locale`.
fn context(m: &Message, order: Option<&dispatch_core::Order>, locale: &str) -> serde_json::Value {
    let order = order.map(|o| {
        serde_json::json!({
            "id": o.id, "external_id": o.facts.external_id, "source": o.facts.source,
            "warehouse": o.facts.warehouse, "customer_id": o.facts.customer.id,
            "customer_name": o.facts.customer.name, "promised_date": o.facts.promised_date.to_string(),
            "state": o.state, "ship_to": o.facts.ship_to,
        })
    });
    let summary = ["reason", "error", "message", "summary"]
        .iter()
        .find_map(|k| m.data.get(*k).and_then(|v| v.as_str()))
        .map_or_else(|| m.event_type.description().to_string(), str::to_string);
    serde_json::json!({
        "order": order, "event": m.data, "event_type": m.event_type.code(),
        "timestamp": m.timestamp.to_rfc3339(), "summary": summary, "locale": locale,
    })
}

/// Every template name a rule may use.
#[cfg(test)]
pub fn shipped_names() -> std::collections::BTreeSet<&'static str> {
    SHIPPED.iter().map(|(_, k, _)| *k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_load_in_three_locales() {
        let t = Templates::load(None).unwrap();
        for name in shipped_names() {
            let mut l = t.locales(name);
            l.sort();
            assert_eq!(l, vec!["de", "en", "nl"], "{name}");
        }
    }

    #[test]
    fn a_broken_template_is_refused_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("fr")).unwrap();
        std::fs::write(
            dir.path().join("fr/delay_notice.txt"),
            "Subject: Commande {{ order.external_id }}\nBonjour,\n\nVotre commande {% if x %} est retardée.\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("fr/proof_of_delivery.txt"), "Subject: Livrée {{ order.external_id\nok\n")
            .unwrap();
        let errs = match Templates::load(Some(dir.path())) {
            Err(e) => e,
            Ok(_) => panic!("broken templates were accepted"),
        };
        assert_eq!(errs.len(), 2, "{errs:?}");
        let body = errs.iter().find(|e| e.file.ends_with("delay_notice.txt")).unwrap();
        // `{% if %}` never closed: reported at the end of the body (line 5 of the file).
        assert!(body.line >= 4, "{body}");
        assert!(body.message.contains("syntax error"), "{body}");
        let subject = errs.iter().find(|e| e.file.ends_with("proof_of_delivery.txt")).unwrap();
        assert_eq!(subject.line, 1, "{subject}");
        assert!(subject.column > 9, "column counts from the file's line: {subject}");
    }

    #[test]
    fn renders_per_locale_and_refuses_unknown_variables() {
        let t = Templates::load(None).unwrap();
        let ctx = serde_json::json!({
            "order": {"external_id": "WH1/OUT/7", "customer_name": "Acme BV", "promised_date": "2026-11-30"},
            "event": {"carrier": "dhl", "tracking_number": "T1"},
        });
        let (s, b) = t.render("dispatch_confirmation", "nl", &ctx).unwrap();
        assert_eq!(s, "Bestelling WH1/OUT/7 is geboekt voor verzending");
        assert!(b.contains("trackingnummer T1"), "{b}");
        let (s, _) = t.render("dispatch_confirmation", "de", &ctx).unwrap();
        assert!(s.starts_with("Bestellung WH1/OUT/7"), "{s}");
        let missing = serde_json::json!({"order": {"external_id": "X"}, "event": {}});
        assert!(t.render("dispatch_confirmation", "en", &missing).is_err(), "strict: a missing field is an error");
    }

    #[test]
    fn bad_rules_are_refused_together() {
        let cfg = NotificationsConfig {
            enabled: true,
            rules: vec![rule("order.shipped", "delay_notice", "customer"), rule("order.held", "sms", "customer")],
            ..Default::default()
        };
        let errs = match Notifier::new(cfg) {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert!(errs.iter().any(|e| e.contains("rules[0].event") && e.contains("order.shipped")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("rules[1].kind")), "{errs:?}");
    }
}
