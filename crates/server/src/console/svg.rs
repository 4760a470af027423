//! Hand-written inline SVG charts (pure): a line chart over days and an x/y chart for
//! calibration. Every point carries a `<title>` with its value, and the page shows the numbers
//! beside each chart, so nothing depends on seeing the picture.

use maud::{Markup, PreEscaped, html};

const W: f64 = 560.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;

/// Colour-blind-safe palette (Okabe–Ito), dark enough on white.
const COLOURS: &[&str] = &["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#6a5a00", "#56B4E9", "#000000"];

/// One named series: a value (or a gap) per x label.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A "nice" upper bound for the y axis: 1, 2 or 5 × 10ⁿ at or above `max`.
pub fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= max {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A line chart: x labels (e.g. days) along the bottom, one line per series, `fmt` formats the
/// values (axis and tooltips). `y_max`: a fixed top (e.g. 1.0 for rates) or the data's.
pub fn line_chart(
    title: &str,
    x_labels: &[String],
    series: &[Series],
    y_max: Option<f64>,
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    let data_max = series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, b| a.max(*b));
    let top = y_max.unwrap_or_else(|| nice_max(data_max));
    let n = x_labels.len().max(1);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |i: usize| LEFT + if n == 1 { pw / 2.0 } else { pw * i as f64 / (n - 1) as f64 };
    let y = |v: f64| TOP + ph - ph * (v / top).clamp(0.0, 1.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    // Grid and y axis labels at 0, ½ and the top.
    for f in [0.0, 0.5, 1.0] {
        let v = top * f;
        let yy = y(v);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#cfd6de\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#4a5360\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0,
            esc(&fmt(v))
        ));
    }
    // X labels: at most ~8, evenly spaced.
    let step = n.div_ceil(8).max(1);
    for (i, l) in x_labels.iter().enumerate() {
        if i % step == 0 || i + 1 == n {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#4a5360\">{}</text>",
                x(i),
                H - BOTTOM + 16.0,
                esc(l)
            ));
        }
    }
    for (si, s) in series.iter().enumerate() {
        let colour = COLOURS[si % COLOURS.len()];
        // Lines break at gaps (days without data).
        let mut path = String::new();
        let mut pen_down = false;
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    path.push_str(&format!("{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x(i), y(*v)));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            svg.push_str(&format!(
                "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                path.trim_end()
            ));
        }
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                let label = x_labels.get(i).map_or("", String::as_str);
                svg.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{} {}: {}</title></circle>",
                    x(i),
                    y(*v),
                    esc(&s.name),
                    esc(label),
                    esc(&fmt(*v))
                ));
            }
        }
    }
    // Legend along the bottom.
    let mut lx = LEFT;
    for (si, s) in series.iter().enumerate() {
        let colour = COLOURS[si % COLOURS.len()];
        svg.push_str(&format!(
            "<rect x=\"{lx:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"#1a1d21\">{}</text>",
            H - 12.0,
            lx + 14.0,
            H - 3.0,
            esc(&s.name)
        ));
        lx += 24.0 + 7.0 * s.name.chars().count() as f64;
    }
    svg.push_str("</svg>");
    html! { (PreEscaped(svg)) }
}

/// A calibration chart: predicted probability (x) against observed frequency (y), both 0–1,
/// with the diagonal of perfect calibration; point size grows with the bin's count.
pub fn calibration_chart(title: &str, bins: &[(f64, f64, u64)]) -> Markup {
    let side = 260.0;
    let pad = 36.0;
    let p = |v: f64| v.clamp(0.0, 1.0) * (side - 2.0 * pad);
    let max_n = bins.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" width=\"{side}\" height=\"{side}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let o = pad;
    let e = side - pad;
    svg.push_str(&format!(
        "<rect x=\"{o}\" y=\"{o}\" width=\"{w}\" height=\"{w}\" fill=\"none\" stroke=\"#cfd6de\"/>\
         <line x1=\"{o}\" y1=\"{e}\" x2=\"{e}\" y2=\"{o}\" stroke=\"#8795a5\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{mid}\" y=\"{xl}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#4a5360\">predicted</text>\
         <text x=\"12\" y=\"{mid}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#4a5360\" transform=\"rotate(-90 12 {mid})\">observed</text>\
         <text x=\"{o}\" y=\"{xl}\" font-size=\"10\" fill=\"#4a5360\">0</text><text x=\"{e}\" y=\"{xl}\" font-size=\"10\" text-anchor=\"end\" fill=\"#4a5360\">1</text>",
        w = side - 2.0 * pad,
        mid = side / 2.0,
        xl = side - 10.0
    ));
    for (pred, obs, n) in bins {
        let r = 3.0 + 5.0 * (*n as f64 / max_n).sqrt();
        svg.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r:.1}\" fill=\"#0072B2\" fill-opacity=\"0.75\"><title>predicted {:.0}%, observed {:.0}% ({n} orders)</title></circle>",
            o + p(*pred),
            e - p(*obs),
            pred * 100.0,
            obs * 100.0
        ));
    }
    svg.push_str("</svg>");
    html! { (PreEscaped(svg)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(0.42), 0.5);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn line_charts_plot_every_value_break_at_gaps_and_escape_names() {
        let days = vec!["11-23".to_string(), "11-24".to_string(), "11-25".to_string()];
        let s = vec![Series { name: "A<M>S".into(), values: vec![Some(1.0), None, Some(0.5)] }];
        let svg = line_chart("on-time", &days, &s, Some(1.0), &|v| format!("{:.0}%", v * 100.0)).into_string();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        // Two separate pen-down moves: the gap is not bridged.
        assert_eq!(svg.matches("d=\"M").count(), 1);
        assert_eq!(svg.matches(" M").count(), 1, "{svg}");
        assert!(svg.contains("A&lt;M&gt;S 11-25: 50%"));
        assert!(!svg.contains("A<M>S"));
        // 100 % sits on the top grid line, 0 % on the bottom one.
        assert!(svg.contains(&format!("cy=\"{:.1}\"", TOP)));
    }

    #[test]
    fn calibration_points_sit_where_predicted_meets_observed() {
        let svg = calibration_chart("cal", &[(0.0, 0.0, 10), (1.0, 1.0, 10)]).into_string();
        assert!(svg.contains("cx=\"36.0\" cy=\"224.0\""), "{svg}");
        assert!(svg.contains("cx=\"224.0\" cy=\"36.0\""));
        assert!(svg.contains("predicted 100%, observed 100% (10 orders)"));
    }
}
