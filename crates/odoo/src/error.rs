//! Odoo's errors as types. Odoo reports a failed call in an envelope (JSON-RPC: HTTP 200 with
//! `error.data`; JSON-2: 4xx/5xx with `{name, message, ...}`); both carry the Python
//! exception's qualified name, which is what an integrator needs to know what to fix.

/// What went wrong talking to Odoo.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OdooError {
    /// Odoo could not be reached or answered like a server that is down (connection refused,
    /// timeout, 502/503/504, a body that is not Odoo's). Retry later.
    #[error("Odoo at {url} is unreachable: {detail}")]
    Unavailable { url: String, detail: String },
    /// The login, password or API key was refused.
    #[error(
        "Odoo refused the credentials of `{login}` on database `{database}`: check [odoo] login and the DISPATCHD_ODOO_API_KEY (an API key of the bot user, Preferences → Account Security)"
    )]
    Auth { login: String, database: String },
    /// Odoo raised an exception while running `model.method`.
    #[error("{model}.{method}: {name}: {message}{hint}", hint = hint(name, model))]
    Server { model: String, method: String, name: String, message: String },
    /// The answer was not what Odoo's API defines (a proxy page, a different product).
    #[error("Odoo's answer to {what} is not understood: {detail}")]
    Protocol { what: String, detail: String },
}

fn hint(name: &str, model: &str) -> String {
    match name {
        "odoo.exceptions.AccessError" => {
            format!(" (give the bot user's group read/write access to `{model}`; see docs/odoo.md)")
        }
        "odoo.exceptions.AccessDenied" => " (the credentials were refused)".into(),
        "builtins.ValueError" if model != "?" => " (a field named in [odoo.mapping] or [odoo.writeback] may not exist on this Odoo; add it or change the mapping)".into(),
        _ => String::new(),
    }
}

impl OdooError {
    /// Worth trying again later (the same call may succeed).
    pub fn is_retryable(&self) -> bool {
        matches!(self, OdooError::Unavailable { .. })
            || matches!(self, OdooError::Server { name, .. } if name.contains("OperationalError") || name.contains("SerializationFailure"))
    }

    /// The Odoo exception name (`odoo.exceptions.MissingError`, ...), if Odoo raised one.
    pub fn exception(&self) -> Option<&str> {
        match self {
            OdooError::Server { name, .. } => Some(name),
            _ => None,
        }
    }

    pub fn is_missing(&self) -> bool {
        self.exception() == Some("odoo.exceptions.MissingError")
    }

    pub fn is_access(&self) -> bool {
        matches!(self.exception(), Some("odoo.exceptions.AccessError" | "odoo.exceptions.AccessDenied"))
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            OdooError::Unavailable { .. } => "unavailable",
            OdooError::Auth { .. } => "auth",
            OdooError::Server { .. } if self.is_access() => "access",
            OdooError::Server { .. } if self.is_missing() => "missing",
            OdooError::Server { .. } => "server",
            OdooError::Protocol { .. } => "protocol",
        }
    }
}
