//! `/`: a read-only status page for a person. Plain HTML with its style inline and no
//! script or external asset, so that it renders the same in any browser and offline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use iggy_kafka_core::group::GroupDescription;
use iggy_kafka_core::stats::Snapshot;

use crate::view::{Lag, TopicView};

/// What the page shows.
#[derive(Debug, Clone)]
pub struct Status<'a> {
    /// Version, runtime, backend.
    pub build: &'a [(&'static str, String); 3],
    /// How long the gateway has run.
    pub uptime: Duration,
    /// Whether it is ready.
    pub ready: bool,
    /// The backend, in a line.
    pub backend: String,
    /// The topics, and how many the limits left out.
    pub topics: (&'a [TopicView], usize),
    /// The groups the coordinator holds.
    pub groups: &'a [GroupDescription],
    /// Every group's lag.
    pub lag: &'a Lag,
    /// The connections.
    pub connections: &'a Snapshot,
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#070}.bad{color:#b00}";

/// Renders the page.
#[must_use]
pub fn render(s: &Status<'_>) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>iggy-kafka-gateway</title><style>{STYLE}</style></head><body><h1>iggy-kafka-gateway</h1>"
    );
    let (class, word) = if s.ready {
        ("ok", "ready")
    } else {
        ("bad", "not ready")
    };
    let _ = write!(
        o,
        "<p id=\"gateway\">Version {} on {}, up {} s: <span class=\"{class}\" id=\"ready\">{word}</span>.</p><p id=\"backend\">{}</p>",
        esc(&s.build[0].1),
        esc(&s.build[1].1),
        s.uptime.as_secs(),
        esc(&s.backend)
    );

    // Groups, with their lag.
    let mut lag_by_group: BTreeMap<&str, Vec<&crate::view::PartitionLag>> = BTreeMap::new();
    for p in &s.lag.partitions {
        lag_by_group.entry(&p.group).or_default().push(p);
    }
    let mut names: Vec<&str> = s.groups.iter().map(|g| g.group.as_str()).collect();
    names.extend(lag_by_group.keys().copied());
    names.sort_unstable();
    names.dedup();
    o.push_str("<h2>Consumer groups</h2><table id=\"groups\"><tr><th>Group</th><th>State</th><th>Members</th><th>Partition</th><th>Committed</th><th>End</th><th>Lag</th></tr>");
    if names.is_empty() {
        o.push_str("<tr><td colspan=\"7\">none</td></tr>");
    }
    for name in names {
        let g = s.groups.iter().find(|g| g.group == name);
        let state = g.map_or("Empty", |g| g.state.name());
        let members = g.map_or_else(String::new, |g| {
            g.members
                .iter()
                .map(|m| format!("{} ({})", esc(&m.client_id), esc(&m.client_host)))
                .collect::<Vec<_>>()
                .join("<br>")
        });
        let parts = lag_by_group.get(name).map_or(&[][..], Vec::as_slice);
        let rows = parts.len().max(1);
        let total: u64 = parts.iter().filter_map(|p| p.lag()).sum();
        let _ = write!(
            o,
            "<tr data-group=\"{g}\"><td rowspan=\"{rows}\">{g}<br><small>total lag <span class=\"total-lag\">{total}</span></small></td><td rowspan=\"{rows}\">{state}</td><td rowspan=\"{rows}\">{members}</td>",
            g = esc(name)
        );
        if parts.is_empty() {
            o.push_str("<td colspan=\"4\">no committed offsets</td></tr>");
        }
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                o.push_str("<tr>");
            }
            let end = p.end.map_or_else(|| "?".to_owned(), |e| e.to_string());
            let lag = p.lag().map_or_else(|| "?".to_owned(), |l| l.to_string());
            let _ = write!(
                o,
                "<td>{}-{}</td><td class=\"n\">{}</td><td class=\"n\">{end}</td><td class=\"n lag\">{lag}</td></tr>",
                esc(&p.topic),
                p.partition,
                p.committed
            );
        }
    }
    o.push_str("</table>");
    if s.lag.groups_left_out > 0 {
        let _ = write!(
            o,
            "<p>{} more groups are not shown (see the admin limits).</p>",
            s.lag.groups_left_out
        );
    }

    // Topics.
    o.push_str("<h2>Topics</h2><table id=\"topics\"><tr><th>Topic</th><th>Partitions</th><th>Start – end per partition</th></tr>");
    if s.topics.0.is_empty() {
        o.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    for t in s.topics.0 {
        let bounds = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, b)| match b {
                Some((start, end)) => format!("{i}: {start} – {end}"),
                None => format!("{i}: ?"),
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{bounds}</td></tr>",
            esc(&t.name),
            t.partitions.len()
        );
    }
    o.push_str("</table>");
    if s.topics.1 > 0 {
        let _ = write!(o, "<p>{} more topics are not shown.</p>", s.topics.1);
    }

    // Connections by client software.
    let mut software: BTreeMap<(String, String), u64> = BTreeMap::new();
    for c in &s.connections.open {
        let name = c
            .client
            .software_name
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let version = c.client.software_version.clone().unwrap_or_default();
        *software.entry((name, version)).or_default() += 1;
    }
    let _ = write!(
        o,
        "<h2>Connections</h2><p>{} open, {} accepted since start.</p><table id=\"clients\"><tr><th>Client software</th><th>Version</th><th>Connections</th></tr>",
        s.connections.open.len(),
        s.connections.accepted
    );
    if software.is_empty() {
        o.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    for ((name, version), n) in software {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
            esc(&name),
            esc(&version)
        );
    }
    o.push_str("</table></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
