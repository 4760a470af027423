//! KPIs (the design brief's definitions in `core::kpi`) per warehouse per day as inline SVG
//! charts, with the numbers beside them. Every order received in the window counts: the store
//! folds the projection's KPI columns (migration 0100) one narrow row at a time.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use chrono::{Duration, NaiveDate};
use dispatch_core::OrderState;
use dispatch_core::kpi::{KpiBucket, Kpis};
use maud::{Markup, html};

use super::board::AGING;
use super::layout::{ConsoleUser, age, bad_param, page, problem_page, query_pairs};
use super::svg::{Series, line_chart};
use crate::AppState;

fn hours(secs: f64) -> String {
    format!("{:.1}h", secs / 3600.0)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The KPI page (`?days=` 1–90, default 14).
#[utoipa::path(get, path = "/console/kpis", tag = "console",
    responses((status = 200, description = "KPIs (HTML)", content_type = "text/html"),
        (status = 400, description = "Bad `days` (HTML)")))]
pub async fn page_handler(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = match query_pairs(&user, raw.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut days = 14i64;
    for (k, v) in &pairs {
        match k.as_str() {
            "days" => match v.parse::<i64>() {
                Ok(d) if (1..=90).contains(&d) => days = d,
                _ => return *bad_param(&user, format!("days must be a number from 1 to 90, not `{v}`")),
            },
            other => return *bad_param(&user, format!("unknown parameter `{other}`; use days")),
        }
    }
    let now = app.clock.now();
    let from = now - Duration::days(days - 1);
    let from_day = from.date_naive();
    let from = from_day.and_hms_opt(0, 0, 0).map_or(from, |d| d.and_utc());
    let (k, cells) = match tokio::try_join!(app.store.kpis_since(from), app.store.board(now - AGING)) {
        Ok(x) => x,
        Err(e) => return problem_page(&user, e.into()),
    };
    let day_list: Vec<NaiveDate> = (0..days).map(|i| from_day + Duration::days(i)).collect();
    let labels: Vec<String> = day_list.iter().map(|d| d.format("%m-%d").to_string()).collect();
    let warehouses: BTreeSet<String> = k.total.keys().cloned().collect();
    let series = |f: &dyn Fn(&KpiBucket) -> Option<f64>| -> Vec<Series> {
        warehouses
            .iter()
            .map(|w| Series {
                name: w.clone(),
                values: day_list.iter().map(|d| k.daily.get(&(w.clone(), *d)).and_then(f)).collect(),
            })
            .collect()
    };
    let open_cells: Vec<_> = cells
        .iter()
        .filter(|c| c.state == OrderState::OnHold.code() || c.state == OrderState::AwaitingApproval.code())
        .collect();
    let body = html! {
        form.filters method="get" action="/console/kpis" {
            label { "Days" input type="number" name="days" min="1" max="90" value=(days); }
            button type="submit" { "Show" }
        }
        p.muted { "All " (k.total.values().map(|b| b.received).sum::<u64>()) " orders received in the last " (days)
            " day(s), by the day they were received (UTC). Definitions: docs/console.md." }
        @if warehouses.is_empty() { p { "No orders in this window." } }
        (kpi_block("Dispatch cycle time p50 / p90 (received → dispatched)",
            line_chart("cycle time p50 per warehouse and day", &labels,
                &series(&|b| b.cycle_percentile(0.5).map(|s| s as f64)), None, &hours),
            &k, &|b| format!("p50 {} · p90 {} ({} dispatched)",
                b.cycle_percentile(0.5).map_or("—".into(), |s| hours(s as f64)),
                b.cycle_percentile(0.9).map_or("—".into(), |s| hours(s as f64)), b.dispatched)))
        (kpi_block("On-time release rate (released before the cut-off of the ship-by date)",
            line_chart("on-time release rate", &labels, &series(&|b| b.on_time_rate()), Some(1.0), &pct),
            &k, &|b| format!("{} of {} released on time ({})", b.released_on_time, b.released,
                b.on_time_rate().map_or("—".into(), pct))))
        (kpi_block("Touchless rate (dispatched with no approval decision or hold override by a person)",
            line_chart("touchless rate", &labels, &series(&|b| b.touchless_rate()), Some(1.0), &pct),
            &k, &|b| format!("{} of {} dispatched touchless ({})", b.dispatched_touchless, b.dispatched,
                b.touchless_rate().map_or("—".into(), pct))))
        (kpi_block("Premium freight avoided (expedited freight requested − approved)",
            line_chart("premium freight avoided", &labels, &series(&|b| Some(b.premium_freight_avoided())), None, &|v| format!("{v:.0}")),
            &k, &|b| format!("{:.2} avoided: {:.2} requested, {:.2} approved", b.premium_freight_avoided(), b.expedite_requested, b.expedite_approved)))
        section aria-labelledby="aging-h" {
            h2 id="aging-h" { "Exception aging (now)" }
            @if open_cells.is_empty() { p.muted { "No open holds or approvals." } } @else {
                table { thead { tr { th scope="col" { "Warehouse" } th scope="col" { "State" } th.num scope="col" { "Orders" }
                    th.num scope="col" { "Waiting over " (AGING.num_hours()) "h" } th scope="col" { "Oldest" } } }
                    tbody { @for c in &open_cells { tr { td { (c.warehouse) } td { (c.state) } td.num { (c.count) } td.num { (c.aged) }
                        td { @match c.oldest_since { Some(t) => (age(t, now)), None => "—" } } } } } }
            }
        }
    };
    page(&user, "/console/kpis", "KPIs", body)
}

fn kpi_block(title: &str, chart: Markup, k: &Kpis, numbers: &dyn Fn(&KpiBucket) -> String) -> Markup {
    html! {
        section.kpi aria-label=(title) {
            h2 { (title) }
            div.chart {
                (chart)
                table.numbers { caption.muted { "Whole window" }
                    tbody { @for (w, b) in &k.total { tr { th scope="row" { (w) } td { (numbers(b)) } } } } }
            }
        }
    }
}
