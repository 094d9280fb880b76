//! A minimal reader of the Prometheus text exposition format (`name{labels} value
//! [timestamp]`), and the deltas of counters between two scrapes.

use std::collections::BTreeMap;

use serde::Serialize;

/// One scrape: series (`name{label="value",…}`, labels sorted) → value.
pub type Scrape = BTreeMap<String, f64>;

/// The change of one counter-like series during the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDelta {
    /// The series, `name{labels}`.
    pub series: String,
    /// Value before the run (0 if the series did not exist yet).
    pub before: f64,
    /// Value after the run.
    pub after: f64,
    /// `after - before`.
    pub delta: f64,
}

/// Whether a metric name is a counter or a histogram/summary accumulator, whose difference
/// between two scrapes is meaningful.
pub fn is_counter_like(name: &str) -> bool {
    name.ends_with("_total") || name.ends_with("_count") || name.ends_with("_sum")
}

/// Parses the text format. Comments, blank lines and lines that do not parse are skipped.
pub fn parse(text: &str) -> Scrape {
    text.lines().filter_map(parse_line).collect()
}

/// Parses one sample line into (canonical series, value).
fn parse_line(line: &str) -> Option<(String, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    labels.sort();
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        let rendered: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        format!("{name}{{{}}}", rendered.join(","))
    };
    Some((series, value))
}

/// Parses `k="v",k2="v2"}` (after the `{`); returns the labels and the text after `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_owned();
        text = text[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break at,
                c => value.push(c),
            }
        };
        labels.push((key, value));
        text = text[end + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The name part of a series.
fn metric_name(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

/// The non-zero changes of counter-like series (`_total`, `_count`, `_sum`) between two
/// scrapes, sorted by series. A series missing before counts as 0 then.
pub fn deltas(before: &Scrape, after: &Scrape) -> Vec<MetricDelta> {
    after
        .iter()
        .filter(|(series, _)| is_counter_like(metric_name(series)))
        .filter_map(|(series, &after)| {
            let before = before.get(series).copied().unwrap_or(0.0);
            let delta = after - before;
            (delta != 0.0 && delta.is_finite()).then(|| MetricDelta {
                series: series.clone(),
                before,
                after,
                delta,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
# HELP depot_http_requests_total HTTP requests answered.
# TYPE depot_http_requests_total counter
depot_http_requests_total{route="/index/{*path}",method="GET",status="200"} 10
depot_http_requests_total{method="PUT",route="/api/v1/crates/new",status="200"} 3
depot_publish_visible_seconds_bucket{le="0.005"} 2
depot_publish_visible_seconds_sum 0.02
depot_publish_visible_seconds_count 3
depot_build_info{version="0.1.0"} 1
weird_total{label="a \"quoted\", comma} brace\\"} 1 1700000000000
"#;

    const AFTER: &str = r#"
depot_http_requests_total{method="GET",route="/index/{*path}",status="200"} 25
depot_http_requests_total{route="/api/v1/crates/new",method="PUT",status="200"} 3
depot_http_requests_total{route="/api/v1/crates/new",method="PUT",status="400"} 2
depot_publish_visible_seconds_bucket{le="0.005"} 9
depot_publish_visible_seconds_sum 0.07
depot_publish_visible_seconds_count 10
depot_build_info{version="0.1.0"} 1
weird_total{label="a \"quoted\", comma} brace\\"} 4
"#;

    #[test]
    fn parses_labels_values_and_escapes() {
        let scrape = parse(BEFORE);
        assert_eq!(
            scrape[r#"depot_http_requests_total{method="GET",route="/index/{*path}",status="200"}"#],
            10.0
        );
        assert_eq!(scrape["depot_publish_visible_seconds_count"], 3.0);
        assert_eq!(
            scrape[r#"weird_total{label="a \"quoted\", comma} brace\\"}"#],
            1.0
        );
        assert_eq!(scrape.len(), 7);
        assert!(parse("garbage line\n{}\n").is_empty());
        assert_eq!(parse("x +Inf")["x"], f64::INFINITY);
    }

    #[test]
    fn deltas_of_counters_only() {
        let d = deltas(&parse(BEFORE), &parse(AFTER));
        let by_series: BTreeMap<&str, f64> =
            d.iter().map(|d| (d.series.as_str(), d.delta)).collect();
        assert_eq!(
            by_series[r#"depot_http_requests_total{method="GET",route="/index/{*path}",status="200"}"#],
            15.0
        );
        assert_eq!(
            by_series[r#"depot_http_requests_total{method="PUT",route="/api/v1/crates/new",status="400"}"#],
            2.0
        );
        assert_eq!(by_series["depot_publish_visible_seconds_count"], 7.0);
        assert!((by_series["depot_publish_visible_seconds_sum"] - 0.05).abs() < 1e-9);
        assert_eq!(
            by_series[r#"weird_total{label="a \"quoted\", comma} brace\\"}"#],
            3.0
        );
        // Unchanged counters, buckets and gauges are left out.
        assert_eq!(d.len(), 5);
    }
}
