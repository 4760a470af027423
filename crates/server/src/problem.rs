//! Every error answer is `application/problem+json` (RFC 9457) with a stable `type`, a
//! human `detail` that says what to do, and field errors where a field is at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_core::{DomainError, FieldError};
use dispatch_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the problem kind, e.g. `urn:dispatchd:problem:validation-failed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:dispatchd:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: vec![],
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_request(slug: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("`{}` {}", one.field, one.message),
            _ => format!("{} fields are invalid; see `errors`", errors.len()),
        };
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "The request is invalid", detail)
            .with_errors(errors)
    }

    pub fn not_found(what: &str) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", format!("{what} does not exist"))
    }

    pub fn unauthorized(detail: &str) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required", detail)
    }

    pub fn forbidden(detail: String) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "something went wrong on our side; nothing was changed. The server log has the details under this request's id",
        )
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(s) = retry
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<DomainError> for Problem {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(errors) => Problem::validation(errors),
            DomainError::NotFound => Problem::not_found("the order"),
            DomainError::VersionConflict { .. } => Problem::new(
                StatusCode::CONFLICT,
                "version-conflict",
                "The order changed meanwhile",
                format!("{e}; fetch it again and retry with its current version in If-Match"),
            ),
            DomainError::IllegalTransition { .. } => {
                Problem::new(StatusCode::CONFLICT, "illegal-transition", "Not possible in this state", e.to_string())
            }
            DomainError::Approval(a) => a.into(),
            DomainError::Override(o) => {
                use dispatch_core::overrides::OverrideError as O;
                match o {
                    O::Invalid(errors) => Problem::validation(errors),
                    O::Forbidden(detail) => Problem::new(
                        StatusCode::FORBIDDEN,
                        "override-not-allowed",
                        "You may not override holds",
                        detail,
                    ),
                    O::NotOverridable(detail) => Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "not-overridable",
                        "This hold cannot be overridden",
                        detail,
                    ),
                }
            }
            DomainError::Corrupt(msg) => {
                tracing::error!(%msg, "corrupt event stream");
                Problem::internal()
            }
        }
    }
}

impl From<dispatch_core::approval::ApprovalError> for Problem {
    fn from(e: dispatch_core::approval::ApprovalError) -> Self {
        use dispatch_core::approval::ApprovalError as A;
        match e {
            A::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!("approval request `{id}` does not exist; list open ones with GET /api/v1/approvals?inbox=me"),
            ),
            A::Forbidden(detail) => {
                Problem::new(StatusCode::FORBIDDEN, "approval-not-allowed", "You may not decide this", detail)
            }
            A::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "approval-conflict", "The approval request moved on", detail)
            }
            A::Invalid(errors) => Problem::validation(errors),
            A::NoRoute(detail) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "no-approval-route", "No approval route", detail)
            }
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => d.into(),
            StoreError::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used with a different request body; use a new key for a new request",
            ),
            StoreError::Conflict(what) => Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", what),
            StoreError::Closed => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "Shutting down",
                "the server is stopping; retry against another node or in a moment",
            ),
            other => {
                tracing::error!(error = %other, "store error");
                Problem::internal()
            }
        }
    }
}
