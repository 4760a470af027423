//! The dispatch board: counts per state per warehouse with aging badges, and one queue (by
//! default the released queue in dispatch order) with filters and search. The board part
//! refreshes itself: `/console/board` serves it alone for the page's script to swap in.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dispatch_core::risk::RiskBand;
use dispatch_core::{HoldReason, Order, OrderState, ServiceLevel};
use dispatch_store::{BoardCell, OrderQuery, OrderSort};
use maud::{Markup, html};

use super::layout::{ConsoleUser, age, bad_param, page, query_pairs, when};
use crate::AppState;
use crate::routes::orders::{encode_position, parse_list_query};

/// An open order waiting longer than this in its state gets a warning badge; twice as long, a
/// red one.
pub const AGING: chrono::Duration = chrono::Duration::hours(2);

/// States shown as board columns, in the order work flows (delivered and cancelled orders are
/// done: the board does not count them).
const COLUMNS: &[OrderState] = &[
    OrderState::Received,
    OrderState::OnHold,
    OrderState::AwaitingApproval,
    OrderState::Released,
    OrderState::Booked,
    OrderState::Exception,
    OrderState::Dispatched,
];

/// The board's filters, as given in the address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub warehouse: Option<String>,
    pub state: Option<OrderState>,
    pub carrier: Option<String>,
    pub service_level: Option<String>,
    pub channel: Option<String>,
    pub reason: Option<HoldReason>,
    /// The late-departure risk band (the model's score at the last evaluation).
    pub risk: Option<RiskBand>,
    pub search: Option<String>,
    pub cursor: Option<String>,
}

impl Filters {
    /// The queue's state: the one asked for, else `on_hold` when filtering by hold reason,
    /// else the released queue.
    pub fn queue_state(&self) -> OrderState {
        self.state.unwrap_or(if self.reason.is_some() { OrderState::OnHold } else { OrderState::Released })
    }

    /// This filter set as a query string (without the cursor unless asked).
    pub fn query(&self, with_cursor: bool) -> String {
        let mut p: Vec<(&str, String)> = Vec::new();
        if let Some(v) = &self.warehouse {
            p.push(("warehouse", v.clone()));
        }
        if let Some(v) = self.state {
            p.push(("state", v.code().into()));
        }
        if let Some(v) = &self.carrier {
            p.push(("carrier", v.clone()));
        }
        if let Some(v) = &self.service_level {
            p.push(("service_level", v.clone()));
        }
        if let Some(v) = &self.channel {
            p.push(("channel", v.clone()));
        }
        if let Some(v) = self.reason {
            p.push(("reason", v.code().into()));
        }
        if let Some(v) = self.risk {
            p.push(("risk", v.code().into()));
        }
        if let Some(v) = &self.search {
            p.push(("q", v.clone()));
        }
        if with_cursor && let Some(v) = &self.cursor {
            p.push(("cursor", v.clone()));
        }
        serde_urlencoded::to_string(&p).unwrap_or_default()
    }
}

/// Parses and checks the filters: an unknown warehouse, state, service level or hold reason is
/// an error naming the parameter and the values it takes.
pub fn parse_filters(app: &AppState, pairs: &[(String, String)]) -> Result<Filters, String> {
    let mut f = Filters::default();
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "warehouse" => {
                if app.warehouses.get(v).is_none() {
                    let known: Vec<&str> = app.warehouses.iter().map(|w| w.code.as_str()).collect();
                    return Err(format!("unknown warehouse `{v}`; this server has {}", known.join(", ")));
                }
                f.warehouse = Some(v.to_string());
            }
            "state" => {
                f.state = Some(OrderState::from_code(v).ok_or_else(|| {
                    let all: Vec<&str> = OrderState::ALL.iter().map(|s| s.code()).collect();
                    format!("unknown state `{v}`; use one of {}", all.join(", "))
                })?)
            }
            "service_level" => {
                ServiceLevel::from_code(v).ok_or_else(|| {
                    let all: Vec<&str> = ServiceLevel::ALL.iter().map(|s| s.code()).collect();
                    format!("unknown service level `{v}`; use one of {}", all.join(", "))
                })?;
                f.service_level = Some(v.to_string());
            }
            "reason" => {
                f.reason = Some(HoldReason::from_code(v).ok_or_else(|| {
                    let all: Vec<&str> = HoldReason::ALL.iter().map(|s| s.code()).collect();
                    format!("unknown hold reason `{v}`; use one of {}", all.join(", "))
                })?)
            }
            "risk" => {
                f.risk = Some(RiskBand::from_code(v).ok_or_else(|| {
                    format!("unknown risk band `{v}`; use high (≥ 50%), medium (20–50%) or low (< 20%)")
                })?)
            }
            "carrier" => f.carrier = Some(v.to_string()),
            "channel" => f.channel = Some(v.to_string()),
            "q" => f.search = Some(v.to_string()),
            "cursor" => f.cursor = Some(v.to_string()),
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; the board takes warehouse, state, carrier, service_level, channel, reason, risk, q, cursor"
                ));
            }
        }
    }
    Ok(f)
}

/// The store query of the queue: the API's own parsing (state, warehouse, reason, priority
/// sort, keyset cursor), plus the console's filters.
fn queue_query(f: &Filters) -> Result<OrderQuery, String> {
    let mut api = vec![
        ("state".to_string(), f.queue_state().code().to_string()),
        ("sort".to_string(), "priority".to_string()),
        ("limit".to_string(), "50".to_string()),
    ];
    if let Some(w) = &f.warehouse {
        api.push(("warehouse".into(), w.clone()));
    }
    if let Some(r) = f.reason {
        api.push(("reason".into(), r.code().into()));
    }
    if let Some(c) = &f.cursor {
        api.push(("cursor".into(), c.clone()));
    }
    let mut q = parse_list_query(&api).map_err(|p| p.detail)?;
    q.carrier = f.carrier.clone();
    q.service_level = f.service_level.clone();
    q.channel = f.channel.clone();
    q.search = f.search.clone();
    q.risk = f.risk;
    Ok(q)
}

/// The badge of a cell: how long its oldest order has waited, coloured by the aging rule.
pub fn aging_class(state: OrderState, oldest: Option<DateTime<Utc>>, now: DateTime<Utc>) -> &'static str {
    let open = state.is_open() || matches!(state, OrderState::Booked | OrderState::Exception);
    match oldest {
        Some(t) if open && now - t > AGING * 2 => "bad",
        Some(t) if open && now - t > AGING => "warn",
        _ => "ok",
    }
}

/// The board page.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "The dispatch board (HTML)", content_type = "text/html"),
        (status = 303, description = "Not signed in: to the sign-in page"),
        (status = 400, description = "Unknown filter value (HTML page naming it)")))]
pub async fn page_handler(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    RawQuery(raw): RawQuery,
) -> Response {
    match render(&app, &user, raw.as_deref()).await {
        Ok(board) => {
            let f = parse_filters(&app, &query_pairs(&user, raw.as_deref()).unwrap_or_default()).unwrap_or_default();
            let body = html! {
                (filters_form(&app, &f))
                p.muted { "Refreshes every 15 seconds. " span id="refreshed" aria-live="polite" {} }
                div id="board" data-refresh=(format!("/console/board?{}", f.query(true))) data-every="15" { (board) }
            };
            page(&user, "/console", "Dispatch board", body)
        }
        Err(r) => *r,
    }
}

/// The board alone (what the page's script swaps in).
#[utoipa::path(get, path = "/console/board", tag = "console",
    responses((status = 200, description = "The board fragment (HTML)", content_type = "text/html")))]
pub async fn fragment(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    RawQuery(raw): RawQuery,
) -> Response {
    match render(&app, &user, raw.as_deref()).await {
        Ok(m) => ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], m.into_string()).into_response(),
        Err(r) => *r,
    }
}

async fn render(app: &AppState, user: &ConsoleUser, raw: Option<&str>) -> Result<Markup, Box<Response>> {
    let pairs = query_pairs(user, raw)?;
    let f = parse_filters(app, &pairs).map_err(|e| bad_param(user, e))?;
    let q = queue_query(&f).map_err(|e| bad_param(user, e))?;
    let now = app.clock.now();
    let cells = app.store.board(now - AGING).await.map_err(|e| problem(user, e))?;
    let queue = app.store.list_orders(&q).await.map_err(|e| problem(user, e))?;
    let next = match (q.sort, &queue.next_after) {
        (OrderSort::Priority, Some(_)) => queue.items.last().map(encode_position),
        _ => None,
    };
    Ok(board(app, &f, &cells, &queue.items, next, now))
}

fn problem(user: &ConsoleUser, e: dispatch_store::StoreError) -> Box<Response> {
    Box::new(super::layout::problem_page(user, e.into()))
}

fn filters_form(app: &AppState, f: &Filters) -> Markup {
    let carriers: Vec<&str> = app.carriers.names().collect();
    html! {
        form.filters method="get" action="/console" role="search" aria-label="Filter the board" {
            label { "Warehouse"
                select name="warehouse" { option value="" { "All" }
                    @for w in app.warehouses.iter() { option value=(w.code) selected[f.warehouse.as_deref() == Some(w.code.as_str())] { (w.code) " · " (w.name) } } } }
            label { "Queue"
                select name="state" { option value="" { "Released (default)" }
                    @for s in OrderState::ALL { option value=(s.code()) selected[f.state == Some(*s)] { (s.code()) } } } }
            label { "Carrier"
                input name="carrier" list="carriers" value=[f.carrier.as_deref()] size="10";
                datalist id="carriers" { @for c in &carriers { option value=(c) {} } } }
            label { "Service level"
                select name="service_level" { option value="" { "All" }
                    @for s in ServiceLevel::ALL { option value=(s.code()) selected[f.service_level.as_deref() == Some(s.code())] { (s.code()) } } } }
            label { "Channel" input name="channel" value=[f.channel.as_deref()] size="10"; }
            label { "Hold reason"
                select name="reason" { option value="" { "Any" }
                    @for r in HoldReason::ALL { option value=(r.code()) selected[f.reason == Some(*r)] { (r.code()) } } } }
            label { "Risk"
                select name="risk" { option value="" { "Any" }
                    @for b in RiskBand::ALL { option value=(b.code()) selected[f.risk == Some(b)] { (band_label(b)) } } } }
            label { "Order or customer" input type="search" name="q" value=[f.search.as_deref()] placeholder="WH1/OUT/00042, ord_…, C-100"; }
            button type="submit" { "Apply" }
            a href="/console" { "Clear" }
        }
    }
}

/// How a band reads in the filter: its name and probabilities.
fn band_label(b: RiskBand) -> &'static str {
    match b {
        RiskBand::High => "high (≥ 50%)",
        RiskBand::Medium => "medium (20–50%)",
        RiskBand::Low => "low (< 20%)",
    }
}

/// The late-departure risk of an order as a badge: its band, coloured, with the probability.
pub fn risk_badge(p: f64) -> Markup {
    let band = RiskBand::of(p);
    let class = match band {
        RiskBand::High => "badge bad",
        RiskBand::Medium => "badge warn",
        RiskBand::Low => "badge ok",
    };
    html! { span class=(class) data-risk=(band.code()) title="late-departure risk (model score at the last evaluation)" {
    (band.code()) " " (format!("{:.0}%", p * 100.0)) } }
}

/// The board: the counts table and the queue.
pub fn board(
    app: &AppState,
    f: &Filters,
    cells: &[BoardCell],
    queue: &[Order],
    next: Option<String>,
    now: DateTime<Utc>,
) -> Markup {
    let mut by_wh: BTreeMap<&str, BTreeMap<&str, &BoardCell>> = BTreeMap::new();
    for w in app.warehouses.iter() {
        by_wh.entry(w.code.as_str()).or_default();
    }
    for c in cells {
        by_wh.entry(c.warehouse.as_str()).or_default().insert(c.state.as_str(), c);
    }
    let state = f.queue_state();
    html! {
        section aria-labelledby="counts-h" {
            h2 id="counts-h" { "Orders by state and warehouse" }
            div.scroll { table.counts {
                caption.muted { "Count, and how long the oldest has waited in that state (amber past "
                    (AGING.num_hours()) "h, red past " (AGING.num_hours() * 2) "h)." }
                thead { tr { th scope="col" { "Warehouse" } @for s in COLUMNS { th.num scope="col" { (s.code()) } } } }
                tbody {
                    @for (wh, row) in &by_wh {
                        @if f.warehouse.as_deref().is_none_or(|w| w == *wh) {
                            tr {
                                th scope="row" { a href=(format!("/console?warehouse={wh}")) { (wh) } }
                                @for s in COLUMNS {
                                    td.num {
                                        @match row.get(s.code()) {
                                            Some(c) => {
                                                a href=(format!("/console?warehouse={wh}&state={}", s.code())) { (c.count) }
                                                @if let Some(o) = c.oldest_since {
                                                    " " span class=(format!("badge {}", aging_class(*s, Some(o), now)))
                                                        title=(format!("{} waiting over {}h", c.aged, AGING.num_hours())) { (age(o, now)) }
                                                }
                                            }
                                            None => span.muted { "0" },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
        section aria-labelledby="queue-h" {
            h2 id="queue-h" { "Queue: " (state.code())
                @if state == OrderState::Released { " — dispatch order (priority, then latest departure)" } }
            @if queue.is_empty() { p.muted { "No orders match." } } @else {
                div.scroll { table.queue {
                    thead { tr { th.num scope="col" { "#" } th scope="col" { "Order" } th scope="col" { "Customer" }
                        th scope="col" { "Warehouse" } th scope="col" { "Service" } th scope="col" { "Channel" } th scope="col" { "Carrier" }
                        th.num scope="col" { "Priority" } th scope="col" { "Latest departure" } th scope="col" { "In state for" }
                        th scope="col" { "Risk" } th scope="col" { "Holds" } } }
                    tbody { @for (i, o) in queue.iter().enumerate() {
                        tr {
                            td.num { (i + 1) }
                            td { a href=(format!("/console/orders/{}", o.id)) { (o.facts.external_id) } }
                            td { (o.facts.customer.name) " " span.muted { (o.facts.customer.id) } }
                            td { (o.facts.warehouse) }
                            td { (o.facts.service_level.code()) }
                            td { (o.facts.channel.as_deref().unwrap_or("—")) }
                            td { (o.shipment.as_ref().map(|s| s.carrier.as_str()).or(o.facts.carrier_preference.as_deref()).unwrap_or("—")) }
                            td.num { (o.priority) }
                            td { @match o.latest_departure { Some(t) => { (when(t))
                                @if t < now { " " span.badge.bad { "missed" } } @else { " " span.muted { "in " (age(now, t)) } } }
                                None => "—" } }
                            td { span class=(format!("badge {}", aging_class(o.state, Some(o.state_since), now))) { (age(o.state_since, now)) } }
                            td { @match o.late_departure_risk { Some(p) => (risk_badge(p)), None => span.muted { "—" } } }
                            td { @for r in &o.hold_reasons { span.badge.warn { (r.code()) } " " } }
                        }
                    } }
                } }
                @if let Some(c) = next {
                    p { a href=(format!("/console?{}&cursor={}", f.query(false), c)) { "Next page →" } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aging_badges_follow_the_threshold_for_open_states_only() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().with_timezone(&Utc);
        let h = chrono::Duration::hours(1);
        assert_eq!(aging_class(OrderState::OnHold, Some(now - h), now), "ok");
        assert_eq!(aging_class(OrderState::OnHold, Some(now - h * 3), now), "warn");
        assert_eq!(aging_class(OrderState::Released, Some(now - h * 5), now), "bad");
        assert_eq!(aging_class(OrderState::Delivered, Some(now - h * 50), now), "ok");
    }

    #[test]
    fn filters_round_trip_through_the_query_string() {
        let f = Filters {
            warehouse: Some("AMS".into()),
            reason: Some(HoldReason::CreditHold),
            risk: Some(RiskBand::High),
            search: Some("WH1/OUT 7".into()),
            ..Default::default()
        };
        assert_eq!(f.queue_state(), OrderState::OnHold);
        assert_eq!(f.query(false), "warehouse=AMS&reason=credit_hold&risk=high&q=WH1%2FOUT+7");
        assert_eq!(Filters::default().queue_state(), OrderState::Released);
    }
}
