//! Message templates: text with `{cel expression}` placeholders, `{expr:.2}` for a number with
//! two decimals, `{{` and `}}` for literal braces. Placeholders are compiled with the policy.

/// One piece of a template before compilation.
#[derive(Debug, Clone, PartialEq)]
pub enum RawPart {
    Text(String),
    /// Expression source, its byte offset in the template, and decimals if formatted.
    Expr {
        src: String,
        offset: usize,
        decimals: Option<usize>,
    },
}

/// Splits a template; an error is (byte offset, message).
pub fn split(t: &str) -> Result<Vec<RawPart>, (usize, String)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let bytes = t.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'{' && bytes.get(i + 1) == Some(&b'{') {
            text.push('{');
            i += 2;
            continue;
        }
        if c == b'}' && bytes.get(i + 1) == Some(&b'}') {
            text.push('}');
            i += 2;
            continue;
        }
        if c == b'}' {
            return Err((i, "unmatched `}` in message; write `}}` for a literal brace".into()));
        }
        if c == b'{' {
            let start = i + 1;
            let mut j = start;
            let mut depth = 0usize;
            let mut quote: Option<u8> = None;
            while j < bytes.len() {
                let b = bytes[j];
                match quote {
                    Some(q) => {
                        if b == b'\\' {
                            j += 1;
                        } else if b == q {
                            quote = None;
                        }
                    }
                    None => match b {
                        b'"' | b'\'' => quote = Some(b),
                        b'{' | b'[' | b'(' => depth += 1,
                        b'}' if depth == 0 => break,
                        b'}' | b']' | b')' => depth = depth.saturating_sub(1),
                        _ => {}
                    },
                }
                j += 1;
            }
            if j >= bytes.len() {
                return Err((i, "placeholder `{` is never closed with `}`".into()));
            }
            let inner = &t[start..j];
            let (src, decimals) = match inner.rfind(":.") {
                Some(k) if inner[k + 2..].chars().all(|c| c.is_ascii_digit()) && k + 2 < inner.len() => {
                    (&inner[..k], inner[k + 2..].parse::<usize>().ok())
                }
                _ => (inner, None),
            };
            if src.trim().is_empty() {
                return Err((i, "empty placeholder `{}`; put an expression inside, e.g. {order.value}".into()));
            }
            if !text.is_empty() {
                parts.push(RawPart::Text(std::mem::take(&mut text)));
            }
            parts.push(RawPart::Expr { src: src.to_string(), offset: start, decimals });
            i = j + 1;
            continue;
        }
        // Copy one UTF-8 character.
        let ch_len = t[i..].chars().next().map_or(1, char::len_utf8);
        text.push_str(&t[i..i + ch_len]);
        i += ch_len;
    }
    if !text.is_empty() {
        parts.push(RawPart::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_placeholders() {
        let p = split("all {order.units_demanded} units; {order.value:.2} EUR {{x}}").unwrap();
        assert_eq!(
            p,
            vec![
                RawPart::Text("all ".into()),
                RawPart::Expr { src: "order.units_demanded".into(), offset: 5, decimals: None },
                RawPart::Text(" units; ".into()),
                RawPart::Expr { src: "order.value".into(), offset: 35, decimals: Some(2) },
                RawPart::Text(" EUR {x}".into()),
            ]
        );
        let q = split("{size(x) == 0 ? \"none\" : x.join(\", \")}").unwrap();
        assert_eq!(q.len(), 1);
        assert!(split("oops {order.value").is_err());
        assert!(split("a } b").is_err());
    }
}
