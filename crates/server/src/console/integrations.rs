//! Integration health: carriers (booking attempts and error rate of the last hour from the
//! store, the same on every node; circuit state and counters since start from this process's
//! metrics, labelled as this node's view), dead letters with Retry (the API's reprocess), outbound webhook
//! endpoints, and the Odoo sync when configured.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use dispatch_core::access::Permission;
use maud::{Markup, html};

use super::layout::{ConsoleUser, csrf_field, field, page, problem_page, query_pairs, see_other, when};
use crate::AppState;
use crate::routes::dead_letters::retry_as;

/// One sample of a Prometheus text exposition: labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of `metric` in a Prometheus text exposition (exact name; no `_bucket` etc.).
pub fn samples(text: &str, metric: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else { continue };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once('}') else { continue };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let mut map = BTreeMap::new();
        for pair in split_labels(labels) {
            if let Some((k, v)) = pair.split_once('=') {
                map.insert(k.trim().to_string(), v.trim().trim_matches('"').replace("\\\"", "\""));
            }
        }
        out.push(Sample { labels: map, value });
    }
    out
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(s: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        parts.push(&s[start..]);
    }
    parts
}

/// What the console shows per carrier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CarrierHealth {
    /// `closed`, `open`, `half_open`, or `unknown` (no booking worker in this process yet).
    pub circuit: &'static str,
    pub booked: f64,
    pub failed: f64,
    /// Booking attempts and failed ones in the last hour, every node's (from the store).
    pub last_hour: Option<(i64, i64)>,
}

impl CarrierHealth {
    /// Failed share of booking outcomes since the process started; `None` without any.
    pub fn error_rate(&self) -> Option<f64> {
        let total = self.booked + self.failed;
        (total > 0.0).then(|| self.failed / total)
    }

    /// Failed share of the last hour's booking attempts (every node's); `None` without any.
    pub fn last_hour_error_rate(&self) -> Option<f64> {
        self.last_hour.filter(|(attempts, _)| *attempts > 0).map(|(a, f)| f as f64 / a as f64)
    }
}

/// Adds the store's attempt totals (every node's) to the carriers' health; a carrier this
/// node does not have configured appears with an `unknown` circuit.
pub fn with_attempts(health: &mut BTreeMap<String, CarrierHealth>, totals: &[dispatch_store::CarrierAttemptTotal]) {
    for h in health.values_mut() {
        h.last_hour = Some((0, 0));
    }
    for t in totals {
        let h = health.entry(t.carrier.clone()).or_insert(CarrierHealth { circuit: "unknown", ..Default::default() });
        h.last_hour = Some((t.attempts, t.failures));
    }
}

/// Per carrier, from `dispatchd_carrier_circuit_state` (0 closed, 1 half-open, 2 open) and
/// `dispatchd_carrier_bookings_total{outcome}` (`booked` counts as success; `voided` is neither).
pub fn carrier_health(text: &str, carriers: &[&str]) -> BTreeMap<String, CarrierHealth> {
    let mut out: BTreeMap<String, CarrierHealth> =
        carriers.iter().map(|c| (c.to_string(), CarrierHealth { circuit: "unknown", ..Default::default() })).collect();
    for s in samples(text, "dispatchd_carrier_circuit_state") {
        if let Some(c) = s.labels.get("carrier") {
            out.entry(c.clone()).or_default().circuit = match s.value as i64 {
                0 => "closed",
                1 => "half_open",
                2 => "open",
                _ => "unknown",
            };
        }
    }
    for s in samples(text, "dispatchd_carrier_bookings_total") {
        let (Some(c), Some(o)) = (s.labels.get("carrier"), s.labels.get("outcome")) else { continue };
        let h = out.entry(c.clone()).or_insert(CarrierHealth { circuit: "unknown", ..Default::default() });
        match o.as_str() {
            "booked" => h.booked += s.value,
            "voided" => {}
            _ => h.failed += s.value,
        }
    }
    out
}

/// The integrations page.
#[utoipa::path(get, path = "/console/integrations", tag = "console",
    responses((status = 200, description = "Integration health (HTML)", content_type = "text/html")))]
pub async fn page_handler(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = match query_pairs(&user, raw.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (dead, endpoints) = match tokio::try_join!(app.store.dead_letters(100), app.store.webhook_endpoints()) {
        Ok(x) => x,
        Err(e) => return problem_page(&user, e.into()),
    };
    let names: Vec<&str> = app.carriers.names().collect();
    let mut health = carrier_health(&app.metrics.render(), &names);
    let now = app.clock.now();
    match app.store.carrier_attempt_totals(now - chrono::Duration::hours(1), now).await {
        Ok(totals) => with_attempts(&mut health, &totals),
        Err(e) => tracing::warn!(error = %e, "reading carrier attempts failed; showing this node's counters only"),
    }
    let odoo = match app.odoo.get() {
        None => None,
        Some(_) => {
            let cursor = app.store.sync_cursor("odoo").await.ok().flatten();
            let runs = app.store.schedule_runs("odoo-sync", 5).await.unwrap_or_default();
            Some((cursor, runs))
        }
    };
    let may_retry = user.may(Permission::ReprocessDeadLetters);
    let body = html! {
        @if let Some(d) = field(&pairs, "done") { p.notice role="status" { (d) } }
        section aria-labelledby="carriers-h" {
            h2 id="carriers-h" { "Carriers" }
            @if health.is_empty() { p.muted { "No carriers configured." } } @else {
                table { thead { tr { th scope="col" { "Carrier" } th.num scope="col" { "Attempts (1 h)" }
                    th.num scope="col" { "Failed (1 h)" } th.num scope="col" { "Error rate (1 h)" }
                    th scope="col" { "Circuit (this node)" } th.num scope="col" { "Booked / failed (this node)" } } }
                    tbody { @for (name, h) in &health { tr {
                        th scope="row" { (name) }
                        @match h.last_hour {
                            Some((a, f)) => { td.num { (a) } td.num { (f) } }
                            None => { td.num { "—" } td.num { "—" } }
                        }
                        td.num { @match h.last_hour_error_rate() { Some(r) => (format!("{:.1}%", r * 100.0)), None => "—" } }
                        td { span class=(format!("badge {}", match h.circuit { "closed" => "ok", "open" => "bad", "half_open" => "warn", _ => "info" })) { (h.circuit) } }
                        td.num { (h.booked) " / " (h.failed)
                            @if let Some(r) = h.error_rate() { " (" (format!("{:.1}%", r * 100.0)) ")" } }
                    } } } }
                p.muted { "Attempts, failures and error rate: every node's booking calls of the last hour (from the database). "
                    "Circuit and booked/failed: this node's own booking worker, since it started." }
            }
        }
        section aria-labelledby="dead-h" {
            h2 id="dead-h" { "Dead letters (" (dead.len()) ")" }
            @if dead.is_empty() { p.muted { "None: every job succeeded or is still retrying." } } @else {
                div.scroll { table.dead-letters {
                    thead { tr { th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "Order" } th.num scope="col" { "Attempts" }
                        th scope="col" { "Last error" } th scope="col" { "Failed" } @if may_retry { th scope="col" { "Action" } } } }
                    tbody { @for d in &dead { tr id=(format!("dl-{}", d.id)) {
                        td { (d.id) } td { (d.kind) }
                        td { @match &d.order_id { Some(o) => a href=(format!("/console/orders/{o}")) { (o) }, None => "—" } }
                        td.num { (d.attempts) } td { (d.last_error.as_deref().unwrap_or("—")) } td { (when(d.failed_at)) }
                        @if may_retry { td { form.inline method="post" action=(format!("/console/dead-letters/{}/retry", d.id)) {
                            (csrf_field(&user))
                            button type="submit" aria-label=(format!("Retry job {}", d.id)) { "Retry" } } } }
                    } } }
                } }
            }
        }
        (webhooks(&endpoints))
        section aria-labelledby="odoo-h" {
            h2 id="odoo-h" { "Odoo" }
            @match &odoo {
                None => p.muted { "Not configured." },
                Some((cursor, runs)) => {
                    p { "Sync cursor: " code { (cursor.as_deref().unwrap_or("none yet")) } }
                    table { thead { tr { th scope="col" { "Started" } th scope="col" { "Outcome" } th scope="col" { "Summary" } } }
                        tbody { @for r in runs { tr { td { (when(r.started_at)) } td { (r.outcome) }
                            td { (r.summary.as_deref().or(r.error.as_deref()).unwrap_or("")) } } } } }
                }
            }
        }
    };
    page(&user, "/console/integrations", "Integrations", body)
}

fn webhooks(endpoints: &[dispatch_store::WebhookEndpointRow]) -> Markup {
    html! {
        section aria-labelledby="hooks-h" {
            h2 id="hooks-h" { "Outbound webhook endpoints" }
            @if endpoints.is_empty() { p.muted { "No subscriptions." } } @else {
                table { thead { tr { th scope="col" { "Endpoint" } th scope="col" { "Events" } th scope="col" { "Status" }
                    th scope="col" { "Failing since" } th scope="col" { "Last success" } } }
                    tbody { @for e in endpoints { tr {
                        td { (e.url) @if let Some(d) = &e.description { br; span.muted { (d) } } }
                        td { (e.event_types.join(", ")) }
                        td { span class=(format!("badge {}", if e.status == "enabled" { "ok" } else { "bad" })) { (e.status) }
                            @if let Some(r) = &e.disabled_reason { br; span.muted { (r) } } }
                        td { @match e.failing_since { Some(t) => span.fail { (when(t)) }, None => "—" } }
                        td { @match e.last_success_at { Some(t) => (when(t)), None => "—" } }
                    } } } }
            }
        }
    }
}

/// Retry a dead letter (form field `csrf`).
#[utoipa::path(post, path = "/console/dead-letters/{id}/retry", tag = "console",
    params(("id" = i64, Path, description = "Dead letter (job) id")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Queued again: back to the integrations page"),
        (status = 403, description = "No CSRF token or not permitted (HTML)"),
        (status = 404, description = "No such dead letter (HTML)")))]
pub async fn retry(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match retry_as(&app, &user.principal, &headers, &id).await {
        Ok(r) => {
            let done = format!("Job {} queued again (order {}).", r.id, r.order_id.as_deref().unwrap_or("—"));
            see_other(&format!(
                "/console/integrations?{}",
                serde_urlencoded::to_string([("done", done)]).unwrap_or_default()
            ))
        }
        Err(p) => problem_page(&user, p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE dispatchd_carrier_circuit_state gauge\n\
        dispatchd_carrier_circuit_state{carrier=\"dhl\"} 2\n\
        dispatchd_carrier_circuit_state{carrier=\"ups\"} 0\n\
        dispatchd_carrier_bookings_total{carrier=\"dhl\",outcome=\"booked\"} 3\n\
        dispatchd_carrier_bookings_total{carrier=\"dhl\",outcome=\"retryable\"} 1\n\
        dispatchd_carrier_bookings_total{carrier=\"dhl\",outcome=\"circuit_open\"} 4\n\
        dispatchd_carrier_bookings_total{carrier=\"ups\",outcome=\"voided\"} 9\n\
        dispatchd_carrier_bookings_total_other{carrier=\"ups\"} 7\n\
        dispatchd_odd{a=\"x,y\",b=\"q\\\"r\"} 1.5\n";

    #[test]
    fn samples_are_read_by_exact_metric_name_with_quoted_commas() {
        let s = samples(TEXT, "dispatchd_odd");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["a"], "x,y");
        assert_eq!(s[0].labels["b"], "q\"r");
        assert_eq!(s[0].value, 1.5);
        assert_eq!(samples(TEXT, "dispatchd_carrier_bookings_total").len(), 4);
    }

    #[test]
    fn the_stores_attempts_add_the_last_hour_and_carriers_this_node_does_not_book() {
        let mut h = carrier_health(TEXT, &["dhl"]);
        let totals = [dispatch_store::CarrierAttemptTotal { carrier: "postnl".into(), attempts: 8, failures: 2 }];
        with_attempts(&mut h, &totals);
        assert_eq!(h["dhl"].last_hour, Some((0, 0)));
        assert_eq!(h["dhl"].last_hour_error_rate(), None);
        assert_eq!((h["postnl"].circuit, h["postnl"].last_hour_error_rate()), ("unknown", Some(0.25)));
    }

    #[test]
    fn carrier_health_has_circuit_and_error_rate() {
        let h = carrier_health(TEXT, &["dhl", "ups", "postnl"]);
        assert_eq!(h["dhl"].circuit, "open");
        assert_eq!(h["dhl"].error_rate(), Some(5.0 / 8.0));
        assert_eq!(h["ups"].circuit, "closed");
        assert_eq!(h["ups"].error_rate(), None, "voided is neither success nor failure");
        assert_eq!(h["postnl"].circuit, "unknown");
    }
}
