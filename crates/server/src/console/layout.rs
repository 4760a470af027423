//! The gate every console page passes (session cookie, the route's permission, the session's
//! CSRF token on forms) and the page layout with role-aware navigation.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dispatch_core::access::{Permission, allows};
use dispatch_store::SessionRecord;
use maud::{DOCTYPE, Markup, html};

use super::{forbidden_csrf, no_store, same, session_user};
use crate::AppState;
use crate::auth::Principal;
use crate::problem::Problem;

/// The signed-in user of a console request.
#[derive(Clone)]
pub struct ConsoleUser {
    pub session: SessionRecord,
    pub principal: Principal,
}

impl ConsoleUser {
    /// The same matrix as the API's route table.
    pub fn may(&self, p: Permission) -> bool {
        allows(&self.principal.roles, p)
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    pub fn name(&self) -> &str {
        self.principal.user.as_deref().unwrap_or(&self.principal.name)
    }
}

/// What a console route needs: its permission, and whether it is a form (POST with CSRF).
#[derive(Clone)]
pub struct Gate {
    pub app: Arc<AppState>,
    pub permission: Permission,
    pub form: bool,
}

const FORM_LIMIT: usize = 64 * 1024;

/// Session → permission → (forms) CSRF. Pages without a session redirect to the sign-in;
/// forms without one are refused like a form without a token.
pub async fn gate(State(g): State<Gate>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let user = session_user(&g.app, &parts.headers).await;
    let body = if g.form {
        let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
            return forbidden_csrf(&g.app);
        };
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let token = fields.iter().find(|(k, _)| k == "csrf").map_or("", |(_, v)| v.as_str());
        let Some((s, _)) = &user else { return forbidden_csrf(&g.app) };
        if token.is_empty() || !same(&s.csrf, token) {
            let u = user.map(|(session, principal)| ConsoleUser { session, principal });
            return error_page(
                u.as_ref(),
                StatusCode::FORBIDDEN,
                "Form refused",
                "The form expired or did not come from this console (its security token is missing or wrong). Reload the page and try again.",
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    let Some((session, principal)) = user else {
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/console/login")]).into_response();
        no_store(&mut r);
        return r;
    };
    let u = ConsoleUser { session, principal };
    if !u.may(g.permission) {
        let detail = format!(
            "This needs the `{}` permission, which none of your roles ({}) has.",
            g.permission.code(),
            u.principal.role_codes().join(", ")
        );
        return error_page(Some(&u), StatusCode::FORBIDDEN, "Not allowed", &detail);
    }
    parts.extensions.insert(u);
    let mut r = next.run(Request::from_parts(parts, body)).await;
    no_store(&mut r);
    r
}

/// The navigation: each entry with the permission its page needs.
pub const NAV: &[(&str, &str, Permission)] = &[
    ("/console", "Board", Permission::ReadOrders),
    ("/console/exceptions", "Exceptions", Permission::ReadOrders),
    ("/console/approvals", "Approvals", Permission::ReadApprovals),
    ("/console/integrations", "Integrations", Permission::ReadConfig),
    ("/console/kpis", "KPIs", Permission::ReadOrders),
    ("/console/insights", "Insights", Permission::ReadOrders),
    ("/console/policy", "Policy", Permission::ReadConfig),
];

/// A whole page: header with the navigation this user may use, the title and the body.
pub fn page(user: &ConsoleUser, active: &str, title: &str, body: Markup) -> Response {
    page_status(user, StatusCode::OK, active, title, body)
}

pub fn page_status(user: &ConsoleUser, status: StatusCode, active: &str, title: &str, body: Markup) -> Response {
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · dispatchd" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console" { "dispatchd" }
                    nav aria-label="Console" {
                        ul {
                            @for (href, label, perm) in NAV {
                                @if user.may(*perm) {
                                    li {
                                        a href=(href) aria-current=[(*href == active).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { (user.name()) " · " (user.principal.role_codes().join(", ")) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(user.csrf());
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], m.into_string()).into_response();
    no_store(&mut r);
    r
}

/// An error as a page (with the navigation when signed in).
pub fn error_page(user: Option<&ConsoleUser>, status: StatusCode, title: &str, detail: &str) -> Response {
    let body = html! { p.error role="alert" { (detail) } p { a href="/console" { "Back to the board" } } };
    match user {
        Some(u) => page_status(u, status, "", title, body),
        None => {
            let m = html! {
                (DOCTYPE)
                html lang="en" { head { meta charset="utf-8"; title { (title) }
                    link rel="stylesheet" href="/console/assets/console.css"; }
                    body { main { h1 { (title) } (body) } } }
            };
            let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], m.into_string()).into_response();
            no_store(&mut r);
            r
        }
    }
}

/// A problem from the shared API logic, shown as a page with its status and detail.
pub fn problem_page(user: &ConsoleUser, p: Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut detail = p.detail.clone();
    // Field errors the detail does not already spell out.
    for e in p.errors.iter().filter(|e| !p.detail.contains(&e.message)) {
        detail.push_str(&format!(" {}: {}.", e.field, e.message));
    }
    error_page(Some(user), status, &p.title, &detail)
}

/// A see-other redirect (after a form).
pub fn see_other(to: &str) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    no_store(&mut r);
    r
}

/// "3h 20m", "2d 4h", "45s": how long since `since`.
pub fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - since).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A UTC time, to the minute, with the exact value as a tooltip.
pub fn when(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

/// The CSRF field of a form of this user.
pub fn csrf_field(user: &ConsoleUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf()); }
}

/// Query pairs of a console page; a malformed query is a 400 page.
pub fn query_pairs(user: &ConsoleUser, raw: Option<&str>) -> Result<Vec<(String, String)>, Box<Response>> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or("")).map_err(|_| {
        Box::new(error_page(
            Some(user),
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The address's query string is malformed.",
        ))
    })
}

/// A 400 page naming the parameter.
pub fn bad_param(user: &ConsoleUser, detail: String) -> Box<Response> {
    Box::new(error_page(Some(user), StatusCode::BAD_REQUEST, "Bad request", &detail))
}

/// The form fields of a console POST (already read by the gate).
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T08:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(age(t, t + chrono::Duration::seconds(42)), "42s");
        assert_eq!(age(t, t + chrono::Duration::minutes(42)), "42m");
        assert_eq!(age(t, t + chrono::Duration::minutes(200)), "3h 20m");
        assert_eq!(age(t, t + chrono::Duration::hours(52)), "2d 4h");
        assert_eq!(age(t + chrono::Duration::hours(1), t), "0s");
    }

    #[test]
    fn form_fields_are_found_by_name_and_blank_counts_as_missing() {
        let f = form_pairs(b"csrf=abc&comment=+&reason=line+down");
        assert_eq!(field(&f, "reason"), Some("line down"));
        assert_eq!(field(&f, "comment"), None);
        assert_eq!(field(&f, "nope"), None);
    }
}
