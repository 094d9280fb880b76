//! What the templates show, computed from the read models: plain strings, numbers and lists,
//! so the templates only lay them out (and escape everything but the sanitized README and the
//! chart, which is built here from numbers).

use std::collections::{BTreeMap, HashMap, HashSet};

use depot_events::{ExtractedMetadata, Timestamp};
use depot_index::{DependencyKind, IndexEntry};
use depot_store::{CrateCard, CrateDetails, VersionDetails};

/// A crate in a list.
#[derive(Debug)]
pub(crate) struct Card {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) downloads: String,
    pub(crate) updated: String,
}

impl From<CrateCard> for Card {
    fn from(card: CrateCard) -> Card {
        Card {
            name: card.name,
            version: card.max_version,
            description: card.description.unwrap_or_default(),
            downloads: thousands(card.downloads),
            updated: date(card.updated_at),
        }
    }
}

/// One row of the versions table.
#[derive(Debug)]
pub(crate) struct VersionRow {
    pub(crate) vers: String,
    pub(crate) published: String,
    pub(crate) size: String,
    pub(crate) downloads: String,
    pub(crate) yanked: bool,
    pub(crate) current: bool,
    /// Whether hosted docs were uploaded for this version.
    pub(crate) docs: bool,
    /// Why it was yanked, if its owner said (empty otherwise).
    pub(crate) yank_message: String,
}

/// One dependency.
#[derive(Debug)]
pub(crate) struct DepRow {
    pub(crate) name: String,
    pub(crate) req: String,
    pub(crate) optional: bool,
    pub(crate) target: String,
    pub(crate) package_note: String,
    pub(crate) features: String,
    /// Whether the dependency is one of this registry's crates (linked).
    pub(crate) local: bool,
}

/// Dependencies of one kind.
#[derive(Debug)]
pub(crate) struct DepGroup {
    pub(crate) title: &'static str,
    pub(crate) deps: Vec<DepRow>,
}

/// One bar of the downloads chart (an SVG `rect`).
#[derive(Debug)]
pub(crate) struct Bar {
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) height: u32,
    pub(crate) label: String,
}

/// Width and height of the downloads chart's drawing area.
pub(crate) const CHART_DAYS: i64 = 90;
const CHART_HEIGHT: u32 = 80;
const BAR_WIDTH: u32 = 6;

/// Everything the crate page shows.
#[derive(Debug)]
pub(crate) struct CratePage {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) newest: String,
    pub(crate) is_newest: bool,
    pub(crate) yanked: bool,
    pub(crate) description: String,
    pub(crate) published: String,
    pub(crate) uploader: String,
    pub(crate) size: String,
    pub(crate) license: String,
    pub(crate) rust_version: String,
    pub(crate) edition: String,
    pub(crate) links: String,
    pub(crate) repository: String,
    pub(crate) homepage: String,
    pub(crate) documentation: String,
    /// Whether hosted docs (`/docs/{name}/{version}/`) exist for the shown version.
    pub(crate) hosted_docs: bool,
    /// Why the shown version was yanked, if its owner said (empty otherwise).
    pub(crate) yank_message: String,
    pub(crate) keywords: Vec<String>,
    pub(crate) authors: Vec<String>,
    pub(crate) readme_blob: Option<String>,
    pub(crate) readme_markdown: bool,
    pub(crate) versions: Vec<VersionRow>,
    pub(crate) dep_groups: Vec<DepGroup>,
    pub(crate) features: Vec<(String, String)>,
    pub(crate) owners: Vec<String>,
    pub(crate) downloads_total: String,
    pub(crate) downloads_version: String,
    pub(crate) downloads_recent: String,
    pub(crate) bars: Vec<Bar>,
    pub(crate) chart_width: u32,
    pub(crate) chart_height: u32,
    pub(crate) chart_max: String,
    pub(crate) cargo_add: String,
    pub(crate) toml_line: String,
}

/// The crate page of `details` at `version` (the newest unyanked one, else the newest, when
/// `None`); `None` if the crate has no such version. `docs` holds the versions with hosted
/// docs, `yank_messages` the reasons given for yanks.
pub(crate) fn crate_page(
    details: CrateDetails,
    version: Option<&str>,
    docs: &HashSet<String>,
    yank_messages: &BTreeMap<String, String>,
    downloads: &depot_store::CrateDownloads,
    today: i64,
) -> Option<CratePage> {
    let newest = newest(&details.versions)?.vers.clone();
    let shown = match version {
        Some(v) => details.versions.iter().find(|d| d.vers == v)?,
        None => details.versions.iter().find(|d| d.vers == newest)?,
    };
    let metadata: ExtractedMetadata = shown
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let entry: Option<IndexEntry> = shown
        .entry
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok());
    let totals: HashMap<&str, u64> = downloads
        .totals
        .iter()
        .map(|(v, n)| (v.as_str(), *n))
        .collect();
    let total: u64 = totals.values().sum();
    let mut versions: Vec<&VersionDetails> = details.versions.iter().collect();
    versions.sort_by_key(|v| std::cmp::Reverse(semver_key(&v.vers)));
    let rows = versions
        .iter()
        .map(|v| VersionRow {
            vers: v.vers.clone(),
            published: date(v.uploaded_at),
            size: bytes(v.size),
            downloads: thousands(totals.get(v.vers.as_str()).copied().unwrap_or(0)),
            yanked: v.yanked,
            current: v.vers == shown.vers,
            docs: docs.contains(&v.vers),
            yank_message: yank_message_of(yank_messages, v),
        })
        .collect();
    let (bars, chart_max, recent) = chart(downloads, today);
    let name = details.name.clone();
    let major = caret(&shown.vers);
    Some(CratePage {
        cargo_add: format!("cargo add {name} --registry depot"),
        toml_line: format!("{name} = {{ version = \"{major}\", registry = \"depot\" }}"),
        name,
        version: shown.vers.clone(),
        is_newest: shown.vers == newest,
        newest,
        yanked: shown.yanked,
        description: metadata.description.clone().unwrap_or_default(),
        published: date_time(shown.uploaded_at),
        uploader: shown.uploader.clone(),
        size: bytes(shown.size),
        license: metadata
            .license
            .clone()
            .or_else(|| metadata.license_file.as_ref().map(|f| format!("see {f}")))
            .unwrap_or_default(),
        rust_version: metadata.rust_version.clone().unwrap_or_default(),
        edition: metadata.edition.clone().unwrap_or_default(),
        links: metadata.links.clone().unwrap_or_default(),
        repository: web_url(metadata.repository.as_deref()),
        homepage: web_url(metadata.homepage.as_deref()),
        documentation: web_url(metadata.documentation.as_deref()),
        hosted_docs: docs.contains(&shown.vers),
        yank_message: yank_message_of(yank_messages, shown),
        keywords: metadata.keywords.clone(),
        authors: metadata.authors.clone(),
        readme_blob: shown.readme_blob.clone(),
        readme_markdown: super::markdown::is_markdown(metadata.readme_file.as_deref()),
        versions: rows,
        dep_groups: entry.as_ref().map(dep_groups).unwrap_or_default(),
        features: entry
            .as_ref()
            .map(|e| {
                let mut all: BTreeMap<&String, &Vec<String>> = e.features.iter().collect();
                if let Some(more) = &e.features2 {
                    all.extend(more.iter());
                }
                all.into_iter()
                    .map(|(k, v)| (k.clone(), v.join(", ")))
                    .collect()
            })
            .unwrap_or_default(),
        owners: details.owners,
        downloads_total: thousands(total),
        downloads_version: thousands(totals.get(shown.vers.as_str()).copied().unwrap_or(0)),
        downloads_recent: thousands(recent),
        bars,
        chart_width: u32::try_from(CHART_DAYS).unwrap_or(90) * BAR_WIDTH,
        chart_height: CHART_HEIGHT,
        chart_max,
    })
}

/// The reason `version` was yanked, if it is and one was given.
fn yank_message_of(messages: &BTreeMap<String, String>, version: &VersionDetails) -> String {
    match messages.get(&version.vers) {
        Some(message) if version.yanked => message.clone(),
        _ => String::new(),
    }
}

/// The version shown by default: the highest unyanked one, else the highest.
fn newest(versions: &[VersionDetails]) -> Option<&VersionDetails> {
    versions
        .iter()
        .max_by(|a, b| (!a.yanked, semver_key(&a.vers)).cmp(&(!b.yanked, semver_key(&b.vers))))
}

fn semver_key(vers: &str) -> Option<semver::Version> {
    semver::Version::parse(vers).ok()
}

/// The requirement `cargo add` would write: the version without build metadata.
fn caret(vers: &str) -> String {
    vers.split('+').next().unwrap_or(vers).to_owned()
}

fn dep_groups(entry: &IndexEntry) -> Vec<DepGroup> {
    [
        (DependencyKind::Normal, "Dependencies"),
        (DependencyKind::Build, "Build dependencies"),
        (DependencyKind::Dev, "Dev dependencies"),
    ]
    .into_iter()
    .filter_map(|(kind, title)| {
        let mut deps: Vec<DepRow> = entry
            .deps
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| DepRow {
                name: d.package.clone().unwrap_or_else(|| d.name.clone()),
                req: d.req.clone(),
                optional: d.optional,
                target: d.target.clone().unwrap_or_default(),
                package_note: if d.package.is_some() {
                    format!("as {}", d.name)
                } else {
                    String::new()
                },
                features: d.features.join(", "),
                local: d.registry.is_none(),
            })
            .collect();
        deps.sort_by(|a, b| a.name.cmp(&b.name));
        (!deps.is_empty()).then_some(DepGroup { title, deps })
    })
    .collect()
}

/// Bars of the last [`CHART_DAYS`] days' downloads (all versions), the tallest bar's label and
/// the period's total.
fn chart(downloads: &depot_store::CrateDownloads, today: i64) -> (Vec<Bar>, String, u64) {
    let first = today - CHART_DAYS + 1;
    let mut per_day = vec![0u64; usize::try_from(CHART_DAYS).unwrap_or(90)];
    for (_, day, count) in &downloads.days {
        if let Ok(i) = usize::try_from(day - first)
            && let Some(slot) = per_day.get_mut(i)
        {
            *slot = slot.saturating_add(*count);
        }
    }
    let max = per_day.iter().copied().max().unwrap_or(0);
    let total = per_day.iter().fold(0u64, |sum, n| sum.saturating_add(*n));
    let bars = per_day
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            let scaled =
                (u128::from(*n) * u128::from(CHART_HEIGHT)).div_ceil(u128::from(max.max(1)));
            let height = u32::try_from(scaled).unwrap_or(CHART_HEIGHT).max(1);
            let day = first + i64::try_from(i).unwrap_or(0);
            Bar {
                x: u32::try_from(i).unwrap_or(0) * BAR_WIDTH,
                y: CHART_HEIGHT - height,
                height,
                label: format!("{}: {}", day_date(day), thousands(*n)),
            }
        })
        .collect();
    (bars, thousands(max), total)
}

/// An `http(s)` URL to link to, or nothing.
fn web_url(url: Option<&str>) -> String {
    match url {
        Some(u) if (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2048 => {
            u.to_owned()
        }
        _ => String::new(),
    }
}

/// `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12.3 KiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `2026-12-05`.
pub(crate) fn date(at: Timestamp) -> String {
    at.to_rfc3339().chars().take(10).collect()
}

/// `2026-12-05 17:03 UTC`.
pub(crate) fn date_time(at: Timestamp) -> String {
    let text = at.to_rfc3339();
    format!(
        "{} {} UTC",
        text.get(..10).unwrap_or_default(),
        text.get(11..16).unwrap_or_default()
    )
}

/// The date of a day number (days since the Unix epoch).
fn day_date(day: i64) -> String {
    date(Timestamp::from_unix_millis(day.saturating_mul(86_400_000)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(caret("1.2.3+build.5"), "1.2.3");
    }

    #[test]
    fn only_web_urls_are_linked() {
        assert_eq!(
            web_url(Some("https://example.com/x")),
            "https://example.com/x"
        );
        assert_eq!(web_url(Some("javascript:alert(1)")), "");
        assert_eq!(web_url(Some("data:text/html,x")), "");
        assert_eq!(web_url(None), "");
    }

    #[test]
    fn the_chart_scales_to_the_busiest_day() {
        let downloads = depot_store::CrateDownloads {
            totals: vec![("1.0.0".into(), 30)],
            days: vec![
                ("1.0.0".into(), 100, 10),
                ("1.1.0".into(), 100, 10),
                ("1.0.0".into(), 99, 5),
                ("1.0.0".into(), 5, 1000),
            ],
        };
        let (bars, max, total) = chart(&downloads, 100);
        assert_eq!((max.as_str(), total), ("20", 25));
        assert_eq!(bars.len(), 2);
        let last = bars.last().expect("today's bar");
        assert_eq!((last.height, last.y), (CHART_HEIGHT, 0));
        assert_eq!(bars[0].height, CHART_HEIGHT / 4);
    }

    proptest! {
        #[test]
        fn thousands_round_trips(n: u64) {
            prop_assert_eq!(thousands(n).replace(',', "").parse::<u64>().ok(), Some(n));
        }

        /// Any counts on any days: bars stay inside the drawing area.
        #[test]
        fn bars_stay_in_the_chart(days in proptest::collection::vec((0i64..200, 0u64..u64::MAX / 1024), 0..50)) {
            let downloads = depot_store::CrateDownloads {
                totals: Vec::new(),
                days: days.into_iter().map(|(d, n)| ("1.0.0".to_owned(), d, n)).collect(),
            };
            let (bars, _, _) = chart(&downloads, 150);
            for bar in bars {
                prop_assert!(bar.y + bar.height <= CHART_HEIGHT);
                prop_assert!(bar.x < u32::try_from(CHART_DAYS).unwrap_or(90) * BAR_WIDTH);
            }
        }
    }
}
