//! The dispatch history: one record per completed dispatch, with the facts known when the
//! order was released and what happened afterwards. Importable from CSV for a new site.

use std::io::Read;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// One completed dispatch: the facts known at release and the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchRecord {
    #[serde(flatten)]
    pub facts: ReleaseFacts,
    /// When the shipment left (carrier pick-up). Outcome.
    pub departed_at: Option<DateTime<Utc>>,
    /// Departed after the cut-off of its planned ship date. Outcome; the model's label.
    pub departed_late: bool,
    /// Delivered (or shipped) after the promised date. Outcome.
    pub shipped_after_promise: bool,
    /// Hours after the cut-off it departed (0 when on time). Outcome.
    pub hours_late: f64,
    /// For generated history only: the probability of `departed_late` the generator drew from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_late_probability: Option<f64>,
}

/// What is known about an order when it is released for dispatch: the only facts a risk
/// model may read (see [`crate::features`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseFacts {
    /// The order's id (dispatchd id or ERP reference).
    pub order_id: String,
    pub warehouse: String,
    /// Booked (or planned) carrier.
    pub carrier: String,
    /// The order's main product family (largest line value).
    pub product_family: String,
    /// Destination region: ISO country code of the ship-to address.
    pub region: String,
    pub service_level: String,
    pub transport_mode: String,
    /// When the order was released for dispatch (UTC).
    pub released_at: DateTime<Utc>,
    /// The same instant as wall-clock time at the warehouse (shift and weekday come from it).
    pub release_local: NaiveDateTime,
    /// Hours from release to the cut-off of the planned ship date (negative: released late).
    pub hours_to_cutoff: Option<f64>,
    /// Released orders waiting at the warehouse when this one was released.
    pub backlog_at_release: Option<u32>,
    /// Failed booking attempts with this carrier in the six hours before release.
    pub carrier_failures_6h: Option<u32>,
    pub lines: u32,
    pub weight_kg: Option<f64>,
    pub hazmat: bool,
    pub order_value: Option<f64>,
}

/// Warehouse shift of a wall-clock hour: early 06–14, late 14–22, night 22–06.
pub fn shift_of(hour: u32) -> &'static str {
    match hour {
        6..=13 => "early",
        14..=21 => "late",
        _ => "night",
    }
}

impl ReleaseFacts {
    pub fn shift(&self) -> &'static str {
        shift_of(self.release_local.hour())
    }

    /// Day of week at the warehouse, Monday = 0.
    pub fn weekday(&self) -> u32 {
        self.release_local.weekday().num_days_from_monday()
    }

    pub fn local_hour(&self) -> f64 {
        f64::from(self.release_local.hour()) + f64::from(self.release_local.minute()) / 60.0
    }
}

/// The CSV columns, in order. `true_late_probability` may be absent or empty.
pub const CSV_COLUMNS: &[&str] = &[
    "order_id",
    "warehouse",
    "carrier",
    "product_family",
    "region",
    "service_level",
    "transport_mode",
    "released_at",
    "release_local",
    "hours_to_cutoff",
    "backlog_at_release",
    "carrier_failures_6h",
    "lines",
    "weight_kg",
    "hazmat",
    "order_value",
    "departed_at",
    "departed_late",
    "shipped_after_promise",
    "hours_late",
    "true_late_probability",
];

/// A CSV import error, naming the line (1-based, header = line 1) and column.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImportError {
    #[error("line 1: missing column `{0}` (expected columns: {cols})", cols = CSV_COLUMNS.join(","))]
    MissingColumn(String),
    #[error("line 1: unknown column `{0}`")]
    UnknownColumn(String),
    #[error("line {line}: column `{column}`: {message}")]
    Field { line: u64, column: String, message: String },
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
}

fn field_err(line: u64, column: &str, message: impl Into<String>) -> ImportError {
    ImportError::Field { line, column: column.to_string(), message: message.into() }
}

/// Reads dispatch history from CSV with a header row naming [`CSV_COLUMNS`] (any order).
/// Every row is checked; the first bad one is reported with its line number and nothing is
/// returned, so a partial file is never imported.
pub fn read_csv(input: impl Read) -> Result<Vec<DispatchRecord>, ImportError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(input);
    let headers = reader.headers().map_err(|e| ImportError::Row { line: 1, message: e.to_string() })?.clone();
    for h in headers.iter() {
        if !CSV_COLUMNS.contains(&h) {
            return Err(ImportError::UnknownColumn(h.to_string()));
        }
    }
    let mut index = Vec::with_capacity(CSV_COLUMNS.len());
    for col in CSV_COLUMNS {
        let pos = headers.iter().position(|h| h == *col);
        if pos.is_none() && *col != "true_late_probability" {
            return Err(ImportError::MissingColumn((*col).to_string()));
        }
        index.push(pos);
    }
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let row = row.map_err(|e| ImportError::Row { line, message: e.to_string() })?;
        let get = |col: usize| -> &str { index[col].and_then(|p| row.get(p)).unwrap_or("") };
        out.push(parse_row(line, &get)?);
    }
    Ok(out)
}

fn parse_row<'a>(line: u64, get: &dyn Fn(usize) -> &'a str) -> Result<DispatchRecord, ImportError> {
    let text = |c: usize| -> Result<String, ImportError> {
        let v = get(c);
        if v.is_empty() { Err(field_err(line, CSV_COLUMNS[c], "must not be empty")) } else { Ok(v.to_string()) }
    };
    let opt_f64 = |c: usize| -> Result<Option<f64>, ImportError> {
        let v = get(c);
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(field_err(line, CSV_COLUMNS[c], format!("`{v}` is not a number"))),
        }
    };
    let opt_u32 = |c: usize| -> Result<Option<u32>, ImportError> {
        let v = get(c);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<u32>()
            .map(Some)
            .map_err(|_| field_err(line, CSV_COLUMNS[c], format!("`{v}` is not a whole number ≥ 0")))
    };
    let boolean = |c: usize| -> Result<bool, ImportError> {
        match get(c).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            v => Err(field_err(line, CSV_COLUMNS[c], format!("`{v}` is not true/false"))),
        }
    };
    let instant = |c: usize| -> Result<Option<DateTime<Utc>>, ImportError> {
        let v = get(c);
        if v.is_empty() {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| field_err(line, CSV_COLUMNS[c], format!("`{v}` is not an RFC 3339 timestamp")))
    };
    let released_at = instant(7)?.ok_or_else(|| field_err(line, "released_at", "must not be empty"))?;
    let local = get(8);
    let release_local = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S"))
        .map_err(|_| {
            field_err(line, "release_local", format!("`{local}` is not a local date-time (YYYY-MM-DDTHH:MM:SS)"))
        })?;
    let lines = opt_u32(12)?.ok_or_else(|| field_err(line, "lines", "must not be empty"))?;
    let p = opt_f64(20)?;
    if let Some(p) = p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(field_err(line, "true_late_probability", "must be between 0 and 1"));
    }
    let hours_late = opt_f64(19)?.unwrap_or(0.0);
    if hours_late < 0.0 {
        return Err(field_err(line, "hours_late", "must not be negative"));
    }
    let facts = ReleaseFacts {
        order_id: text(0)?,
        warehouse: text(1)?,
        carrier: text(2)?,
        product_family: text(3)?,
        region: text(4)?,
        service_level: text(5)?,
        transport_mode: text(6)?,
        released_at,
        release_local,
        hours_to_cutoff: opt_f64(9)?,
        backlog_at_release: opt_u32(10)?,
        carrier_failures_6h: opt_u32(11)?,
        lines,
        weight_kg: opt_f64(13)?,
        hazmat: boolean(14)?,
        order_value: opt_f64(15)?,
    };
    Ok(DispatchRecord {
        facts,
        departed_at: instant(16)?,
        departed_late: boolean(17)?,
        shipped_after_promise: boolean(18)?,
        hours_late,
        true_late_probability: p,
    })
}

/// Writes records as CSV with the [`CSV_COLUMNS`] header (the format [`read_csv`] reads).
pub fn write_csv(records: &[DispatchRecord], out: impl std::io::Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for rec in records {
        let r = &rec.facts;
        w.write_record([
            r.order_id.clone(),
            r.warehouse.clone(),
            r.carrier.clone(),
            r.product_family.clone(),
            r.region.clone(),
            r.service_level.clone(),
            r.transport_mode.clone(),
            r.released_at.to_rfc3339(),
            r.release_local.format("%Y-%m-%dT%H:%M:%S").to_string(),
            opt(r.hours_to_cutoff.map(|v| v.to_string())),
            opt(r.backlog_at_release.map(|v| v.to_string())),
            opt(r.carrier_failures_6h.map(|v| v.to_string())),
            r.lines.to_string(),
            opt(r.weight_kg.map(|v| v.to_string())),
            r.hazmat.to_string(),
            opt(r.order_value.map(|v| v.to_string())),
            opt(rec.departed_at.map(|v| v.to_rfc3339())),
            rec.departed_late.to_string(),
            rec.shipped_after_promise.to_string(),
            rec.hours_late.to_string(),
            opt(rec.true_late_probability.map(|v| v.to_string())),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<DispatchRecord> {
        crate::generate::HistorySpec { days: 3, scale: 0.05, ..Default::default() }.generate()
    }

    #[test]
    fn csv_round_trips() {
        let recs = sample();
        assert!(!recs.is_empty());
        let mut buf = Vec::new();
        write_csv(&recs, &mut buf).unwrap();
        let back = read_csv(buf.as_slice()).unwrap();
        assert_eq!(back.len(), recs.len());
        for (a, b) in back.iter().zip(&recs) {
            assert_eq!(a, b);
        }
    }

    #[test]
    fn bad_rows_are_named_by_line_and_column() {
        let recs = sample();
        let mut buf = Vec::new();
        write_csv(&recs[..3], &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        // Break the lines count on the third data row (file line 4).
        let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
        cells[12] = "many".into();
        lines[3] = cells.join(",");
        let err = read_csv(lines.join("\n").as_bytes()).unwrap_err();
        assert_eq!(
            err,
            ImportError::Field {
                line: 4, column: "lines".into(), message: "`many` is not a whole number ≥ 0".into()
            }
        );
        let missing = text.replacen("carrier,", "", 1);
        assert_eq!(read_csv(missing.as_bytes()).unwrap_err(), ImportError::MissingColumn("carrier".into()));
        let bad_time = text.replacen(&recs[0].facts.released_at.to_rfc3339(), "yesterday", 1);
        assert!(
            matches!(read_csv(bad_time.as_bytes()).unwrap_err(), ImportError::Field { line: 2, ref column, .. } if column == "released_at")
        );
    }

    #[test]
    fn shifts_cover_the_day() {
        assert_eq!(shift_of(6), "early");
        assert_eq!(shift_of(13), "early");
        assert_eq!(shift_of(14), "late");
        assert_eq!(shift_of(22), "night");
        assert_eq!(shift_of(3), "night");
    }
}
