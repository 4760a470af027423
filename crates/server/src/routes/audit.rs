//! `GET /api/v1/audit`: the audit log with filters and keyset pagination, as JSON pages or as
//! a whole JSONL or CSV export (streamed page by page).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dispatch_core::FieldError;
use dispatch_core::audit::AuditEntry;
use dispatch_store::AuditQuery;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::Problem;

/// One audit entry as served.
#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Position in the chain (gap-free).
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub roles: Vec<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub subject: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        let d = e.draft;
        AuditEntryView {
            seq: e.seq,
            at: d.at,
            actor: d.actor,
            roles: d.roles,
            request_id: d.request_id,
            action: d.action,
            subject: d.subject,
            before: d.before,
            after: d.after,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Jsonl,
    Csv,
}

fn parse(params: &[(String, String)]) -> Result<(AuditQuery, Format, bool), Problem> {
    let bad = |field: &str, msg: String| {
        Problem::bad_request("bad-query", msg.clone()).with_errors(vec![FieldError::new(field, msg)])
    };
    let time = |field: &str, v: &str| crate::routes::policy::parse_since(v).map_err(|m| bad(field, m));
    let mut q = AuditQuery { limit: 100, ..Default::default() };
    let mut format = Format::Json;
    let mut limited = false;
    for (k, v) in params {
        match k.as_str() {
            "actor" => q.actor = Some(v.clone()),
            "action" => q.action = Some(v.clone()),
            "subject" => q.subject = Some(v.clone()),
            "request_id" => q.request_id = Some(v.clone()),
            "since" => q.since = Some(time("since", v)?),
            "until" => q.until = Some(time("until", v)?),
            "limit" => {
                limited = true;
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("limit", format!("limit must be a number from 1 to 1000, not `{v}`")))?
            }
            "cursor" => {
                q.after_seq = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| bad("cursor", "cursor is not one this server issued".into()))?,
                )
            }
            "format" => {
                format = match v.as_str() {
                    "json" => Format::Json,
                    "jsonl" => Format::Jsonl,
                    "csv" => Format::Csv,
                    _ => return Err(bad("format", format!("format must be json, jsonl or csv, not `{v}`"))),
                }
            }
            other => {
                return Err(bad(
                    other,
                    format!(
                        "unknown query parameter `{other}`; use actor, action, subject, request_id, since, until, \
                         limit, cursor, format"
                    ),
                ));
            }
        }
    }
    Ok((q, format, limited))
}

fn csv_field(s: &str) -> String {
    // Quote always; a leading formula character is neutralized for spreadsheet safety.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

const CSV_HEADER: &str = "seq,at,actor,roles,request_id,action,subject,before,after,prev_hash,hash\n";

fn csv_line(e: &AuditEntryView) -> String {
    let fields = [
        e.seq.to_string(),
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.actor.clone(),
        e.roles.join(" "),
        e.request_id.clone().unwrap_or_default(),
        e.action.clone(),
        e.subject.clone(),
        e.before.clone().unwrap_or_default(),
        e.after.clone().unwrap_or_default(),
        e.prev_hash.clone(),
        e.hash.clone(),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// The audit log: who did what to what, when, in which request; each entry hash-chained to the
/// one before. `format=jsonl|csv` exports every matching entry (from `cursor` on).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(("actor" = Option<String>, Query, description = "e.g. `user:ana` or `token:erp-sync`"),
           ("action" = Option<String>, Query, description = "e.g. `order.evaluated`, `policy.changed`, `token.created`"),
           ("subject" = Option<String>, Query, description = "Exact, or a prefix ending in `*` (`order:ord_1@*`)"),
           ("request_id" = Option<String>, Query),
           ("since" = Option<String>, Query, description = "Date or RFC 3339 instant (inclusive)"),
           ("until" = Option<String>, Query, description = "Date or RFC 3339 instant (exclusive)"),
           ("limit" = Option<u32>, Query, description = "Page size 1–1000 (default 100; exports: all unless given)"),
           ("cursor" = Option<String>, Query),
           ("format" = Option<String>, Query, description = "json (default), jsonl or csv")),
    responses((status = 200, body = AuditList),
        (status = 400, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, Problem> {
    let (q, format, limited) = parse(&params)?;
    if format == Format::Json {
        let items: Vec<AuditEntryView> =
            app.store.audit_entries(&q).await?.into_iter().map(AuditEntryView::from).collect();
        let next_cursor = (items.len() == q.limit as usize).then(|| items.last().map(|e| e.seq.to_string())).flatten();
        return Ok(axum::Json(AuditList { items, next_cursor }).into_response());
    }
    // Exports read page by page while streaming, so memory stays flat whatever the size.
    let total = if limited { Some(q.limit as usize) } else { None };
    let first = AuditQuery { limit: 1000.min(total.unwrap_or(1000) as u32), ..q };
    let store = app.store.clone();
    let stream = futures::stream::unfold((Some(first), 0usize, format == Format::Csv), move |(next, sent, header)| {
        let store = store.clone();
        async move {
            let mut q = next?;
            let rows = match store.audit_entries(&q).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed");
                    return Some((Err(std::io::Error::other("audit export failed")), (None, sent, false)));
                }
            };
            let mut out = String::new();
            if header {
                out.push_str(CSV_HEADER);
            }
            let n = rows.len();
            let full = n == q.limit as usize;
            let last = rows.last().map(|e| e.seq);
            for e in rows {
                let v = AuditEntryView::from(e);
                if format == Format::Csv {
                    out.push_str(&csv_line(&v));
                } else {
                    out.push_str(&serde_json::to_string(&v).unwrap_or_default());
                    out.push('\n');
                }
            }
            let sent = sent + n;
            let more = full && total.is_none_or(|t| sent < t);
            let next = match (more, last) {
                (true, Some(seq)) => {
                    q.after_seq = Some(seq);
                    if let Some(t) = total {
                        q.limit = 1000.min((t - sent) as u32);
                    }
                    Some(q)
                }
                _ => None,
            };
            if out.is_empty() && next.is_none() {
                return None;
            }
            Some((Ok::<_, std::io::Error>(out), (next, sent, false)))
        }
    });
    let mut r = Body::from_stream(stream).into_response();
    let (ctype, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        _ => ("application/jsonl", "jsonl"),
    };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"audit.{ext}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Result<(AuditQuery, Format, bool), Problem> {
        parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn filters_are_parsed_and_bad_ones_refused() {
        let (q, f, limited) =
            p(&[("actor", "user:ana"), ("since", "2026-11-01"), ("cursor", "42"), ("format", "csv")]).unwrap();
        assert_eq!(q.actor.as_deref(), Some("user:ana"));
        assert_eq!(q.after_seq, Some(42));
        assert!(q.since.is_some());
        assert_eq!((f, limited), (Format::Csv, false));
        for bad in [[("limit", "0")], [("limit", "1001")], [("cursor", "-1")], [("format", "xml")], [("who", "x")]] {
            assert!(p(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralized() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=cmd()"), "\"'=cmd()\"");
    }
}
