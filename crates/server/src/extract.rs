//! Request extraction with precise errors: malformed JSON is a 400 that says where, a wrong
//! type, a missing or an unknown field is a 422 that names the field, an oversized body is a
//! 413. Nothing is written when extraction fails, because handlers never run.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use dispatch_core::FieldError;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body; `T` may not contain fields it does not know.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("send the body as JSON with `Content-Type: application/json` (got `{ctype}`)"),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Problem::bad_request("unreadable-body", format!("the request body could not be read: {e}"))
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        format!("the body exceeds {} bytes; split the request", MAX_BODY_BYTES),
    )
}

/// Parses JSON into `T`, naming the field at fault and refusing unknown fields (a typo such
/// as `qty_alocated` would otherwise silently change the meaning of an order).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    // Every body of this API is an object; serde would otherwise read a struct from an array.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(Problem::validation(vec![FieldError::new("body", "must be a JSON object")]));
    }
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(json_path(&path));
    let ignored = serde_ignored::Deserializer::new(&mut de, &mut on_unknown);
    let value: T = match serde_path_to_error::deserialize(ignored) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // A type error may be reported before a syntax error further on: malformed JSON
            // must still be a 400, so check the syntax on its own.
            let syntax = if inner.is_syntax() || inner.is_eof() {
                Some(inner.to_string())
            } else {
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).err().map(|e| e.to_string())
            };
            return Err(if let Some(msg) = syntax {
                Problem::bad_request("malformed-json", format!("the body is not valid JSON: {msg}"))
            } else {
                let field = if path == "." { "body".to_string() } else { path };
                let message = clean_serde_message(&inner.to_string());
                Problem::validation(vec![FieldError::new(field, message)])
            });
        }
    };
    if let Err(e) = de.end() {
        return Err(Problem::bad_request("malformed-json", format!("trailing characters after the JSON value: {e}")));
    }
    if !unknown.is_empty() {
        return Err(Problem::validation(
            unknown
                .into_iter()
                .map(|f| FieldError::new(f, "unknown field; check its spelling against the API document"))
                .collect(),
        ));
    }
    Ok(value)
}

/// `lines[0].qty`, the way the field errors of validation name fields.
fn json_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", json_path(parent)),
        Path::Map { parent, key } => match json_path(parent) {
            s if s.is_empty() => key.to_string(),
            s => format!("{s}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => json_path(parent),
    }
}

/// serde's messages end with " at line 1 column 42"; the field path says more.
fn clean_serde_message(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        b: Inner,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        c: String,
    }

    #[test]
    fn errors_name_the_field() {
        let p = parse::<T>(br#"{"a": "x", "b": {"c": "y"}}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "a");
        let p = parse::<T>(br#"{"a": 1, "b": {}}"#).unwrap_err();
        assert_eq!(p.errors[0].field, "b");
        assert!(p.errors[0].message.contains("missing field `c`"), "{:?}", p.errors);
        let p = parse::<T>(br#"{"a": 1, "b": {"c": "y", "d": 2}}"#).unwrap_err();
        assert_eq!(p.errors[0].field, "b.d");
        let p = parse::<T>(br#"{"a": 1,"#).unwrap_err();
        assert_eq!(p.status, 400);
        let p = parse::<T>(br#"{"a": 1, "b": {"c": "y"}} x"#).unwrap_err();
        assert_eq!(p.status, 400);
        assert!(parse::<T>(br#"{"a": 1, "b": {"c": "y"}}"#).is_ok());
    }
}
