//! Load errors with the place to fix them: file, line and column in the TOML file, also for a
//! mistake inside a CEL expression (its position is mapped back into the file).

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// What class of mistake: `toml`, `syntax`, `unknown_field`, `type`, `unknown_reason`,
    /// `unknown_carrier`, `too_large`, `invalid`.
    pub kind: &'static str,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Every error of a refused policy (all of them, so they can be fixed in one go).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Turns byte offsets of the source into line and column.
pub struct Locator<'a> {
    pub file: &'a str,
    pub source: &'a str,
}

impl Locator<'_> {
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = self.source.get(..offset).unwrap_or(self.source);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    pub fn error(&self, offset: usize, kind: &'static str, message: impl Into<String>) -> PolicyError {
        let (line, column) = self.line_col(offset);
        PolicyError { file: self.file.to_string(), line, column, kind, message: message.into() }
    }

    /// Where the text of a TOML string value starts, given the span of the value (which
    /// includes its quotes). Multi-line strings skip a newline right after the opening quotes.
    pub fn content_start(&self, span: &Range<usize>) -> usize {
        let raw = self.source.get(span.clone()).unwrap_or("");
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else if raw.starts_with('"') || raw.starts_with('\'') {
            1
        } else {
            0
        };
        let mut start = span.start + quote;
        if quote == 3 {
            let rest = self.source.get(start..).unwrap_or("");
            if rest.starts_with("\r\n") {
                start += 2;
            } else if rest.starts_with('\n') {
                start += 1;
            }
        }
        start
    }

    /// The file offset of a byte offset inside the string value at `span`. Exact for literal
    /// strings ('...' and '''...'''); for basic strings escapes before the point shift it.
    pub fn inside(&self, span: &Range<usize>, offset_in_value: usize) -> usize {
        (self.content_start(span) + offset_in_value).min(span.end.saturating_sub(1).max(span.start))
    }
}

/// "did you mean" for a misspelt name.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates.into_iter().map(|c| (edit_distance(wrong, c), c)).filter(|(d, _)| *d <= 2).min().map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let l = Locator { file: "p.toml", source: "a = 1\nb = 'x'\n" };
        assert_eq!(l.line_col(0), (1, 1));
        assert_eq!(l.line_col(6), (2, 1));
        assert_eq!(l.line_col(10), (2, 5));
        assert_eq!(l.content_start(&(10..13)), 11);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("unit_alocated", ["units_allocated", "units_demanded"]), Some("units_allocated"));
        assert_eq!(suggest("zzz", ["units_allocated"]), None);
    }
}
