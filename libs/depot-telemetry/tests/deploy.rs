//! `deploy/` may only use the metrics Depot declares (`depot_telemetry::METRICS`).
//!
//! Reads every YAML file under `deploy/prometheus/` (scrape config, recording rules, alerts,
//! promtool tests) and every JSON file under `deploy/grafana/` (dashboards), and checks:
//!
//! - every `depot_…` name (outside YAML comments) is a declared metric, or a declared histogram
//!   with `_bucket`/`_sum`/`_count`; in PromQL (`expr:`, `series:`, a panel's `expr`, a
//!   variable's query) a histogram is only used through those series;
//! - the labels of every `depot_…{…}` selector in PromQL are the metric's declared labels (plus
//!   `job`, `instance`, and `le` on `_bucket`), `le` values are real bucket bounds as the
//!   exporter renders them, and `route`/`outcome`/`consumer`/`result` values are known ones;
//! - every `depot:…` recording rule used anywhere is defined in `deploy/prometheus/rules/`,
//!   above its first use in the same file, follows level:metric:operations, and is used;
//! - every alert has a `severity` (page or ticket), a summary, a description and a runbook
//!   whose anchor exists in `deploy/README.md`, and the promtool tests expect it both firing and
//!   quiet;
//! - the dashboards are valid JSON with a `${datasource}` Prometheus variable used by every
//!   panel and query;
//! - every metric in METRICS has a row in the table of `deploy/README.md` naming its type and
//!   labels, and every alert is documented there.
//!
//! Every problem is reported at once, each with its file and line (or panel).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use depot_telemetry::{BYTES_BUCKETS, Kind, METRICS, MetricSpec, SECONDS_BUCKETS};
use regex::Regex;

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// Values of the bounded labels, as the services set them (the api's route templates, the
/// publish outcomes, the consumers, the cache results). A value `deploy/` uses must be one.
const KNOWN_VALUES: &[(&str, &[&str])] = &[
    (
        "route",
        &[
            "/index/config.json",
            "/index/{*path}",
            "/api/v1/crates/new",
            "/api/v1/crates",
            "/api/v1/crates/{name}/{version}/download",
            "/api/v1/crates/{name}/{version}/yank",
            "/api/v1/crates/{name}/{version}/unyank",
            "/api/v1/crates/{name}/owners",
            "/api/v1/me",
            "/health",
            "unmatched",
        ],
    ),
    (
        "outcome",
        &[
            "accepted",
            "rejected",
            "duplicate",
            "invalid",
            "unauthorized",
            "conflict",
            "too_large",
            "queued",
            "error",
        ],
    ),
    ("consumer", &["extractor", "projector"]),
    ("result", &["hit", "miss"]),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Files under `dir` (recursively) whose name ends with one of `exts`, sorted.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if exts.iter().any(|ext| {
                path.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case(ext))
            }) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Where a piece of text comes from, for messages: `deploy/x.yml:12` or a dashboard panel.
#[derive(Debug, Clone)]
struct Origin(String);

/// One piece of text to check: PromQL, or prose (annotations, descriptions).
#[derive(Debug)]
struct Text {
    origin: Origin,
    body: String,
    promql: bool,
}

/// What the deploy files contain, as far as these checks need.
#[derive(Debug, Default)]
struct Deploy {
    texts: Vec<Text>,
    /// Recording rules: name -> (file, line of `record:`).
    records: BTreeMap<String, (String, usize)>,
    /// Per rules file, in order: (line, record name or None for alerts, PromQL).
    rules: BTreeMap<String, Vec<(usize, Option<String>, String)>>,
    /// Alert rules: (file, line, the rule's lines).
    alerts: Vec<(String, usize, String)>,
    /// promtool tests: (file, line, alertname, expects firing).
    expectations: Vec<(String, usize, String, bool)>,
    problems: Vec<String>,
}

/// Strips a YAML comment: `#` at the start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("''", "'")
    } else if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
    } else {
        v.to_owned()
    }
}

/// The value of `key:` at line `i` (inline, quoted, or a `|`/`>` block) and the next line.
fn yaml_value(lines: &[&str], i: usize, rest: &str) -> (String, usize) {
    let rest = rest.trim();
    if rest.starts_with('|') || rest.starts_with('>') {
        let key_indent = indent(lines[i]);
        let mut body = Vec::new();
        let mut j = i + 1;
        while j < lines.len() && (lines[j].trim().is_empty() || indent(lines[j]) > key_indent) {
            body.push(lines[j].trim());
            j += 1;
        }
        let sep = if rest.starts_with('>') { " " } else { "\n" };
        (body.join(sep).trim().to_owned(), j)
    } else {
        (unquote(strip_comment(rest)), i + 1)
    }
}

impl Deploy {
    fn load(root: &Path) -> Deploy {
        let mut deploy = Deploy::default();
        let prometheus = root.join("deploy/prometheus");
        let yamls = files(&prometheus, &["yml", "yaml"]);
        assert!(
            yamls.len() >= 4,
            "expected prometheus.yml, the rules and the promtool tests under {}, found {yamls:?}",
            prometheus.display()
        );
        for path in &yamls {
            deploy.load_yaml(root, path);
        }
        let dashboards = files(&root.join("deploy/grafana"), &["json"]);
        assert!(!dashboards.is_empty(), "no dashboard under deploy/grafana");
        for path in &dashboards {
            deploy.load_dashboard(root, path);
        }
        deploy
    }

    fn load_yaml(&mut self, root: &Path, path: &Path) {
        let name = path
            .strip_prefix(root)
            .expect("under the root")
            .display()
            .to_string();
        let is_rules = name.starts_with("deploy/prometheus/rules/");
        let is_test = name.starts_with("deploy/prometheus/tests/");
        let text = read(path);
        let lines: Vec<&str> = text.lines().collect();
        let key = Regex::new(r"^\s*(?:- )?([A-Za-z_]+):(?:\s+(.*))?$").expect("regex");
        let mut pending_record: Option<(usize, String)> = None;
        let mut alert_start: Option<usize> = None;
        let mut last_alertname: Option<(usize, String)> = None;
        let mut i = 0;
        while i < lines.len() {
            let line = strip_comment(lines[i]);
            let Some(c) = key.captures(line) else {
                if !line.trim().is_empty() {
                    self.prose(&name, i + 1, line);
                }
                i += 1;
                continue;
            };
            let k = c.get(1).expect("key").as_str();
            let rest = c.get(2).map_or("", |m| m.as_str());
            let (value, next) = yaml_value(&lines, i, rest);
            let origin = Origin(format!("{name}:{}", i + 1));
            match k {
                "expr" | "series" => {
                    self.texts.push(Text {
                        origin,
                        body: value.clone(),
                        promql: true,
                    });
                    if is_rules && k == "expr" {
                        let record = pending_record.take();
                        if let Some((record_line, r)) = &record
                            && self
                                .records
                                .insert(r.clone(), (name.clone(), *record_line))
                                .is_some()
                        {
                            self.problems.push(format!(
                                "{name}:{record_line}: recording rule `{r}` is defined twice"
                            ));
                        }
                        self.rules.entry(name.clone()).or_default().push((
                            i + 1,
                            record.map(|(_, r)| r),
                            value,
                        ));
                    }
                }
                "record" if is_rules => pending_record = Some((i + 1, value)),
                "alert" if is_rules => {
                    if let Some(start) = alert_start.take() {
                        self.alerts
                            .push((name.clone(), start + 1, lines[start..i].join("\n")));
                    }
                    alert_start = Some(i);
                }
                "alertname" if is_test => last_alertname = Some((i + 1, value)),
                "exp_alerts" if is_test => {
                    let Some((line_no, alert)) = last_alertname.take() else {
                        self.problems
                            .push(format!("{name}:{}: exp_alerts without an alertname", i + 1));
                        i = next;
                        continue;
                    };
                    let firing = value.trim() != "[]";
                    self.expectations
                        .push((name.clone(), line_no, alert, firing));
                }
                _ => self.prose(&name, i + 1, &value),
            }
            // A `key: |` block of prose is skipped whole; nested keys are read one by one.
            i = if k == "expr" || k == "series" || rest.trim().starts_with(['|', '>']) {
                next
            } else {
                i + 1
            };
        }
        if let Some(start) = alert_start {
            // The last alert runs to the end of its group: the next line at a lower indent.
            let base = indent(lines[start]);
            let end = (start + 1..lines.len())
                .find(|&j| !lines[j].trim().is_empty() && indent(lines[j]) < base)
                .unwrap_or(lines.len());
            self.alerts
                .push((name.clone(), start + 1, lines[start..end].join("\n")));
        }
    }

    fn prose(&mut self, file: &str, line: usize, body: &str) {
        if body.contains("depot") {
            self.texts.push(Text {
                origin: Origin(format!("{file}:{line}")),
                body: body.to_owned(),
                promql: false,
            });
        }
    }

    fn load_dashboard(&mut self, root: &Path, path: &Path) {
        let name = path
            .strip_prefix(root)
            .expect("under the root")
            .display()
            .to_string();
        let dashboard: serde_json::Value = match serde_json::from_str(&read(path)) {
            Ok(v) => v,
            Err(e) => {
                self.problems.push(format!("{name}: not valid JSON: {e}"));
                return;
            }
        };
        self.check_dashboard_shape(&name, &dashboard);
        self.walk_json(&name, "", &dashboard, false);
    }

    /// Collects every string of the dashboard; `expr`, and a query variable's `query` and
    /// `definition`, are PromQL.
    fn walk_json(&mut self, file: &str, at: &str, value: &serde_json::Value, variable: bool) {
        match value {
            serde_json::Value::String(s) => {
                let key = at.rsplit('.').next().unwrap_or("");
                let promql = key == "expr" || (variable && (key == "query" || key == "definition"));
                if promql || s.contains("depot") {
                    self.texts.push(Text {
                        origin: Origin(format!("{file} {at}")),
                        body: s.clone(),
                        promql,
                    });
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk_json(file, &format!("{at}[{i}]"), item, variable);
                }
            }
            serde_json::Value::Object(map) => {
                let is_variable = variable
                    || at.starts_with(".templating")
                        && map.get("type").and_then(|t| t.as_str()) == Some("query");
                let title = map.get("title").and_then(|t| t.as_str());
                for (k, v) in map {
                    let here = match title {
                        Some(t) if !at.is_empty() => format!("{at} (\"{t}\").{k}"),
                        _ => format!("{at}.{k}"),
                    };
                    self.walk_json(file, &here, v, is_variable);
                }
            }
            _ => {}
        }
    }

    fn check_dashboard_shape(&mut self, file: &str, d: &serde_json::Value) {
        let p = &mut self.problems;
        match d["schemaVersion"].as_u64() {
            Some(v) if v >= 36 => {}
            other => p.push(format!(
                "{file}: schemaVersion {other:?}, expected >= 36 (39)"
            )),
        }
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !vars.iter().any(|v| {
            v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
        }) {
            p.push(format!(
                "{file}: no template variable `datasource` of type datasource (query prometheus)"
            ));
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            if v["datasource"]["uid"] != "${datasource}" {
                p.push(format!(
                    "{file}: variable {} does not use the ${{datasource}} variable",
                    v["name"]
                ));
            }
        }
        let mut ids = BTreeSet::new();
        let panels = d["panels"].as_array().cloned().unwrap_or_default();
        if panels.is_empty() {
            p.push(format!("{file}: no panels"));
        }
        for panel in &panels {
            let title = panel["title"].as_str().unwrap_or("?");
            if let Some(id) = panel["id"].as_u64() {
                if !ids.insert(id) {
                    p.push(format!("{file}: panel id {id} (\"{title}\") is not unique"));
                }
            } else {
                p.push(format!("{file}: panel \"{title}\" has no numeric id"));
            }
            let g = &panel["gridPos"];
            let (x, w) = (g["x"].as_u64(), g["w"].as_u64());
            if !matches!((x, w, g["y"].as_u64(), g["h"].as_u64()), (Some(x), Some(w), Some(_), Some(_)) if x + w <= 24)
            {
                p.push(format!(
                    "{file}: panel \"{title}\" has a bad gridPos {g} ({x:?} + {w:?} > 24?)"
                ));
            }
            if panel["type"] == "row" {
                continue;
            }
            if panel["datasource"]["uid"] != "${datasource}" {
                p.push(format!(
                    "{file}: panel \"{title}\" does not use the ${{datasource}} variable"
                ));
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                p.push(format!("{file}: panel \"{title}\" has no queries"));
            }
            for t in &targets {
                if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                    p.push(format!(
                        "{file}: panel \"{title}\" has a query without expr"
                    ));
                }
                if t["datasource"]["uid"] != "${datasource}" {
                    p.push(format!(
                        "{file}: a query of panel \"{title}\" does not use the ${{datasource}} variable"
                    ));
                }
            }
        }
    }
}

fn spec(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

/// The declared metric a series name belongs to, and whether it is a histogram sub-series.
fn resolve(series: &str) -> Option<(&'static MetricSpec, Option<&'static str>)> {
    if let Some(s) = spec(series) {
        return Some((s, None));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && let Some(s) = spec(base)
            && s.kind == Kind::Histogram
        {
            return Some((s, Some(suffix)));
        }
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .min()
        .filter(|(d, _)| *d <= 8)
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Rust's `f64` Display, which is how the exporter renders `le`.
fn rendered_bounds(spec: &MetricSpec) -> Vec<String> {
    let bounds = if spec.name.ends_with("_seconds") {
        SECONDS_BUCKETS
    } else {
        BYTES_BUCKETS
    };
    bounds
        .iter()
        .map(f64::to_string)
        .chain(["+Inf".to_owned()])
        .collect()
}

fn check_metric_names(deploy: &Deploy, problems: &mut Vec<String>) {
    let token = Regex::new(r"\bdepot_[a-z0-9_]*[a-z0-9]").expect("regex");
    let selector =
        Regex::new(r#"\b(depot_[a-z0-9_]*[a-z0-9])\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}"#)
            .expect("regex");
    let matcher = Regex::new(r#"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)""#)
        .expect("regex");
    let known: BTreeMap<&str, &[&str]> = KNOWN_VALUES.iter().copied().collect();
    for text in &deploy.texts {
        let at = &text.origin.0;
        for m in token.find_iter(&text.body) {
            let name = m.as_str();
            // `depot_telemetry` is the crate, `depot_…` in prose may name it or a type.
            if !text.promql && name == "depot_telemetry" {
                continue;
            }
            match resolve(name) {
                None => problems.push(format!(
                    "{at}: `{name}` is not a metric in depot_telemetry::METRICS{}",
                    did_you_mean(name, METRICS.iter().map(|s| s.name))
                )),
                Some((s, None)) if text.promql && s.kind == Kind::Histogram => {
                    problems.push(format!(
                        "{at}: `{name}` is a histogram; PromQL must use `{name}_bucket`, `_sum` or `_count`"
                    ));
                }
                Some(_) => {}
            }
        }
        if !text.promql {
            continue;
        }
        for c in selector.captures_iter(&text.body) {
            let name = &c[1];
            let Some((s, suffix)) = resolve(name) else {
                continue; // reported above
            };
            for mc in matcher.captures_iter(&c[2]) {
                let (label, op, value) = (&mc[1], &mc[2], &mc[3]);
                let allowed = s.labels.contains(&label)
                    || TARGET_LABELS.contains(&label)
                    || (label == "le" && suffix == Some("_bucket"));
                if !allowed {
                    problems.push(format!(
                        "{at}: `{name}` has no label `{label}` (declared: {:?}, plus job, instance{})",
                        s.labels,
                        if s.kind == Kind::Histogram { ", and le on _bucket" } else { "" }
                    ));
                    continue;
                }
                let literal = |v: &str| !v.contains(['.', '*', '+', '?', '(', ')', '[', '^', '$']);
                let values: Vec<&str> = match op {
                    "=" | "!=" => vec![value],
                    _ if value.split('|').all(literal) => value.split('|').collect(),
                    _ => continue, // a real regex: cannot be checked value by value
                };
                if label == "le" {
                    let bounds = rendered_bounds(s);
                    for v in values.iter().filter(|v| !bounds.iter().any(|b| b == *v)) {
                        problems.push(format!(
                            "{at}: `{name}{{le=\"{v}\"}}` is not a bucket; the exporter renders le as one of {bounds:?}"
                        ));
                    }
                } else if let Some(ok) = known.get(label) {
                    for v in values.iter().filter(|v| !ok.contains(v)) {
                        problems.push(format!(
                            "{at}: `{name}{{{label}=\"{v}\"}}`: `{v}` is not a {label} Depot reports{}",
                            did_you_mean(v, ok.iter().copied())
                        ));
                    }
                }
            }
        }
    }
}

fn check_recording_rules(deploy: &Deploy, problems: &mut Vec<String>) {
    let token = Regex::new(r"\bdepot:[A-Za-z0-9_:]*[A-Za-z0-9_]").expect("regex");
    let convention = Regex::new(r"^depot:[a-z0-9_]+:[a-z0-9_]+$").expect("regex");
    if deploy.records.is_empty() {
        problems.push("deploy/prometheus/rules defines no recording rules".to_owned());
    }
    for (name, (file, line)) in &deploy.records {
        if !convention.is_match(name) {
            problems.push(format!(
                "{file}:{line}: recording rule `{name}` does not follow level:metric:operations (depot:<metric>:<operations>)"
            ));
        }
    }
    let mut used = BTreeSet::new();
    for text in &deploy.texts {
        for m in token.find_iter(&text.body) {
            used.insert(m.as_str().to_owned());
            if !deploy.records.contains_key(m.as_str()) {
                problems.push(format!(
                    "{}: recording rule `{}` is not defined in deploy/prometheus/rules{}",
                    text.origin.0,
                    m.as_str(),
                    did_you_mean(m.as_str(), deploy.records.keys().map(String::as_str))
                ));
            }
        }
    }
    // Within one rules file a rule may only use recording rules defined above it (rules of a
    // group are evaluated in order; a later one would be one interval stale).
    for (file, rules) in &deploy.rules {
        let mut defined_above = BTreeSet::new();
        let here: BTreeSet<&str> = rules.iter().filter_map(|(_, r, _)| r.as_deref()).collect();
        for (line, record, expr) in rules {
            for m in token.find_iter(expr) {
                let used = m.as_str();
                if here.contains(used) && !defined_above.contains(used) {
                    problems.push(format!(
                        "{file}:{line}: uses recording rule `{used}` before the rule that defines it"
                    ));
                }
            }
            if let Some(r) = record {
                defined_above.insert(r.as_str());
            }
        }
    }
    for (name, (file, line)) in &deploy.records {
        if !used.contains(name) {
            problems.push(format!(
                "{file}:{line}: recording rule `{name}` is used by no alert, rule or dashboard"
            ));
        }
    }
}

fn check_alerts(deploy: &Deploy, readme: &str, problems: &mut Vec<String>) {
    let name_re = Regex::new(r"alert:\s*(\S+)").expect("regex");
    let severity = Regex::new(r"(?m)^\s*severity:\s*(\S+)\s*$").expect("regex");
    let runbook = Regex::new(r"deploy/README\.md#([A-Za-z0-9_-]+)").expect("regex");
    if deploy.alerts.is_empty() {
        problems.push("deploy/prometheus/rules defines no alerts".to_owned());
    }
    let mut names = BTreeSet::new();
    for (file, line, body) in &deploy.alerts {
        let name = name_re
            .captures(body)
            .map_or("?", |c| c.get(1).expect("name").as_str());
        names.insert(name.to_owned());
        let at = format!("{file}:{line}: alert {name}");
        match severity.captures(body).map(|c| c[1].to_owned()).as_deref() {
            Some("page" | "ticket") => {}
            other => problems.push(format!("{at}: severity {other:?}, expected page or ticket")),
        }
        for annotation in ["summary:", "description:", "runbook:"] {
            if !body.contains(annotation) {
                problems.push(format!("{at}: no `{annotation}` annotation"));
            }
        }
        let anchors: Vec<String> = runbook
            .captures_iter(body)
            .map(|c| c[1].to_owned())
            .collect();
        if anchors.is_empty() {
            problems.push(format!(
                "{at}: the runbook does not point into deploy/README.md#…"
            ));
        }
        for anchor in anchors {
            if !readme.contains(&format!("id=\"{anchor}\"")) {
                problems.push(format!(
                    "{at}: runbook anchor #{anchor} is not in deploy/README.md (add <a id=\"{anchor}\"></a>)"
                ));
            }
        }
        if !readme.contains(&format!("`{name}`")) {
            problems.push(format!(
                "{at}: not documented in deploy/README.md (`{name}`)"
            ));
        }
    }
    for name in &names {
        let expectations: Vec<_> = deploy
            .expectations
            .iter()
            .filter(|(_, _, a, _)| a == name)
            .collect();
        if !expectations.iter().any(|(_, _, _, firing)| *firing) {
            problems.push(format!(
                "alert {name}: no promtool test in deploy/prometheus/tests expects it to fire"
            ));
        }
        if !expectations.iter().any(|(_, _, _, firing)| !*firing) {
            problems.push(format!(
                "alert {name}: no promtool test in deploy/prometheus/tests expects it to stay quiet (exp_alerts: [])"
            ));
        }
    }
    for (file, line, alert, _) in &deploy.expectations {
        if !names.contains(alert) {
            problems.push(format!(
                "{file}:{line}: tests alert {alert}, which no rule defines"
            ));
        }
    }
}

fn check_readme(readme: &str, problems: &mut Vec<String>) {
    for spec in METRICS {
        let row_start = format!("| `{}` |", spec.name);
        let Some(row) = readme
            .lines()
            .find(|l| l.trim_start().starts_with(&row_start))
        else {
            problems.push(format!(
                "deploy/README.md: no table row for metric `{}` (a line starting with {row_start:?})",
                spec.name
            ));
            continue;
        };
        let kind = match spec.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        if !row.to_lowercase().contains(kind) {
            problems.push(format!(
                "deploy/README.md: the row of `{}` does not say it is a {kind}",
                spec.name
            ));
        }
        for label in spec.labels {
            if !row.contains(&format!("`{label}`")) {
                problems.push(format!(
                    "deploy/README.md: the row of `{}` does not name its label `{label}`",
                    spec.name
                ));
            }
        }
    }
}

#[test]
fn deploy_uses_only_declared_metrics_and_defined_rules() {
    let root = repo_root();
    let readme = read(&root.join("deploy/README.md"));
    let deploy = Deploy::load(&root);
    let mut problems = deploy.problems.clone();
    check_metric_names(&deploy, &mut problems);
    check_recording_rules(&deploy, &mut problems);
    check_alerts(&deploy, &readme, &mut problems);
    check_readme(&readme, &mut problems);
    // The loader must have seen what it is meant to check.
    let promql = deploy.texts.iter().filter(|t| t.promql).count();
    assert!(
        promql >= 50,
        "only {promql} PromQL expressions found: is the parser broken?"
    );
    let rules_text: String = files(&root.join("deploy/prometheus/rules"), &["yml", "yaml"])
        .iter()
        .map(|p| read(p))
        .collect();
    let count = |key: &str| {
        rules_text
            .lines()
            .filter(|l| l.trim_start().trim_start_matches("- ").starts_with(key))
            .count()
    };
    assert_eq!(
        deploy.records.len(),
        count("record:"),
        "recording rules parsed"
    );
    assert_eq!(deploy.alerts.len(), count("alert:"), "alerts parsed");
    if !problems.is_empty() {
        let mut msg = format!(
            "{} problem(s) in deploy/ (metrics are declared in libs/depot-telemetry/src/lib.rs):\n",
            problems.len()
        );
        for p in &problems {
            let _ = writeln!(msg, "  - {p}");
        }
        panic!("{msg}");
    }
}

#[test]
fn the_checks_catch_mistakes() {
    // The checks themselves, on made-up text: each mistake is reported.
    let mut deploy = Deploy::default();
    let bad = [
        ("unknown metric", "rate(depot_http_request_total[5m])", true),
        ("bare histogram", "rate(depot_upload_bytes[5m])", true),
        ("suffix on a counter", "depot_downloads_total_count", true),
        (
            "unknown label",
            "depot_publish_total{result=\"accepted\"}",
            true,
        ),
        (
            "unknown le",
            "depot_http_request_duration_seconds_bucket{le=\"0.050\"}",
            true,
        ),
        (
            "unknown route",
            "depot_http_requests_total{route=\"/index/{path}\"}",
            true,
        ),
        (
            "unknown regex alternative",
            "depot_http_requests_total{route!~\"/health|unmatch\"}",
            true,
        ),
        (
            "undefined rule",
            "depot:sli_availability:ratio_rate5m > 1",
            true,
        ),
        (
            "unknown metric in prose",
            "see depot_publish_latency_seconds",
            false,
        ),
    ];
    for (what, body, promql) in bad {
        deploy.texts.push(Text {
            origin: Origin(what.to_owned()),
            body: body.to_owned(),
            promql,
        });
    }
    let good = [
        "sum(rate(depot_upload_bytes_sum{job=~\"$job\"}[5m])) / sum(rate(depot_upload_bytes_count[5m]))",
        "depot_http_request_duration_seconds_bucket{route=\"/index/{*path}\", le=\"0.05\"}",
        "depot_publish_visible_seconds_bucket{le=\"5\"} + depot_upload_bytes_bucket{le=\"+Inf\"}",
        "depot_consumer_pending_events{consumer=~\"extractor|projector\"}",
        "depot_http_requests_total{route!~\"/health|unmatched\", status=~\"5..\"}",
    ];
    for body in good {
        deploy.texts.push(Text {
            origin: Origin(format!("good: {body}")),
            body: body.to_owned(),
            promql: true,
        });
    }
    let mut problems = Vec::new();
    check_metric_names(&deploy, &mut problems);
    check_recording_rules(&deploy, &mut problems);
    for (what, _, _) in bad {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("{what}:"))),
            "{what} was not reported; problems: {problems:#?}"
        );
    }
    assert!(
        !problems.iter().any(|p| p.starts_with("good:")),
        "false positives: {problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("did you mean `depot_http_requests_total`")),
        "{problems:#?}"
    );
}
