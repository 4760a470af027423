//! Address completeness and postcode formats. The formats are the national ones as printed on
//! mail; they catch typos and swapped fields, not whether the street exists.

use std::sync::LazyLock;

use regex::Regex;

/// Countries with no postcode system, where an empty postcode is correct.
const NO_POSTCODE: &[&str] = &["AE", "AG", "AO", "BS", "BZ", "HK", "QA", "SR", "TT", "ZW"];

static FORMATS: LazyLock<Vec<(&'static str, Regex, &'static str)>> = LazyLock::new(|| {
    [
        ("NL", r"^[1-9][0-9]{3} ?[A-Za-z]{2}$", "four digits and two letters, e.g. 1012 LG"),
        ("DE", r"^[0-9]{5}$", "five digits, e.g. 10115"),
        ("BE", r"^[1-9][0-9]{3}$", "four digits, e.g. 1000"),
        ("FR", r"^[0-9]{5}$", "five digits, e.g. 75001"),
        (
            "GB",
            r"^(GIR ?0AA|[A-Za-z]{1,2}[0-9][0-9A-Za-z]? ?[0-9][A-Za-z]{2})$",
            "outward and inward code, e.g. SW1A 1AA",
        ),
        ("US", r"^[0-9]{5}(-[0-9]{4})?$", "a ZIP code, e.g. 10001 or 10001-1234"),
        ("PL", r"^[0-9]{2}-[0-9]{3}$", "two digits, a dash and three digits, e.g. 00-950"),
        ("ES", r"^(0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3}$", "five digits starting 01–52, e.g. 28013"),
        ("IT", r"^[0-9]{5}$", "five digits, e.g. 00184"),
    ]
    .into_iter()
    .map(|(c, re, hint)| (c, Regex::new(re).unwrap_or_else(|e| panic!("built-in postcode pattern {c}: {e}")), hint))
    .collect()
});

/// Countries whose postcode format is checked exactly.
pub fn checked_countries() -> impl Iterator<Item = &'static str> {
    FORMATS.iter().map(|(c, _, _)| *c)
}

/// Every problem with an address, as plain sentences; empty when it is deliverable.
pub fn problems(a: &crate::Address) -> Vec<String> {
    let mut out = Vec::new();
    for (field, value) in [("name", &a.name), ("street", &a.street), ("city", &a.city)] {
        if value.trim().is_empty() {
            out.push(format!("{field} is empty"));
        }
    }
    let country = a.country.trim();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        out.push(format!("country `{country}` is not an ISO 3166-1 alpha-2 code such as NL"));
        return out;
    }
    let postcode = a.postcode.trim();
    match FORMATS.iter().find(|(c, _, _)| *c == country) {
        Some((_, re, hint)) => {
            if !re.is_match(postcode) {
                out.push(format!("postcode `{postcode}` is not a valid {country} postcode ({hint})"));
            }
        }
        None => {
            if postcode.is_empty() && !NO_POSTCODE.contains(&country) {
                out.push("postcode is empty".into());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;

    fn addr(country: &str, postcode: &str) -> Address {
        Address {
            name: "Acme".into(),
            street: "Main 1".into(),
            city: "Town".into(),
            postcode: postcode.into(),
            country: country.into(),
        }
    }

    #[test]
    fn valid_postcodes_pass() {
        for (c, p) in [
            ("NL", "1012 LG"),
            ("NL", "1012LG"),
            ("DE", "10115"),
            ("BE", "1000"),
            ("FR", "75001"),
            ("GB", "SW1A 1AA"),
            ("GB", "M1 1AE"),
            ("US", "10001"),
            ("US", "10001-1234"),
            ("PL", "00-950"),
            ("ES", "28013"),
            ("IT", "00184"),
            ("CH", "8001"),
        ] {
            assert!(problems(&addr(c, p)).is_empty(), "{c} {p}: {:?}", problems(&addr(c, p)));
        }
    }

    #[test]
    fn invalid_postcodes_are_named() {
        for (c, p) in [
            ("NL", "0123 AB"),
            ("NL", "1012"),
            ("DE", "1011"),
            ("BE", "01000"),
            ("FR", "7500"),
            ("GB", "12345"),
            ("US", "1000"),
            ("PL", "00950"),
            ("ES", "53001"),
            ("IT", "0018"),
            ("CH", ""),
        ] {
            let p2 = problems(&addr(c, p));
            assert_eq!(p2.len(), 1, "{c} {p}: {p2:?}");
            assert!(p2[0].contains("postcode"), "{p2:?}");
        }
    }

    #[test]
    fn every_missing_part_is_reported() {
        let a = Address { country: "nl".into(), ..Default::default() };
        let p = problems(&a);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[3].contains("ISO 3166"));
    }

    #[test]
    fn nine_countries_are_checked_exactly() {
        let c: Vec<_> = checked_countries().collect();
        for want in ["NL", "DE", "BE", "FR", "GB", "US", "PL", "ES", "IT"] {
            assert!(c.contains(&want));
        }
    }
}
