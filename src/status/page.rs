//! The status page as HTML: one self-contained document (inline CSS, no scripts, no external
//! assets, refreshes itself with a `<meta>` tag), so it works in any browser, without
//! JavaScript and behind any proxy. Pure: data in, text out.
//!
//! Owns: `StatusData`, `Window`, `Health`, `RecorderHealth`, `render`, `hit_ratio`.

use crate::admission::human_seconds;
use crate::decision::Decision;
use crate::store::decisions::{DecisionCount, LoggedDecision, TemplateSaving};
use jiff::Timestamp;

/// Decisions over one time window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// `hour`, `day` (used in element ids).
    pub id: String,
    /// Heading (`Last hour`).
    pub title: String,
    /// Counts by decision; `None` when the store could not answer.
    pub counts: Option<Vec<DecisionCount>>,
}

/// Health of one component.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Working.
    pub ok: bool,
    /// One line saying how it is.
    pub detail: String,
}

/// What the recorder did since this process started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecorderHealth {
    /// Whether a recorder runs in this process.
    pub running: bool,
    /// Executions recorded.
    pub recorded: f64,
    /// Completions not recorded, by reason.
    pub skipped: Vec<(String, f64)>,
    /// Record calls that failed in the store (retried).
    pub store_failures: f64,
    /// Mean pod-finish → committed-row lag, seconds.
    pub mean_lag_seconds: Option<f64>,
    /// List/watch failures against the Kubernetes API (e.g. a missing permission).
    pub watch_errors: f64,
}

/// Everything the page shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusData {
    /// When the page was built.
    pub generated_at: Timestamp,
    /// Last hour, last day (from the decision log: every replica's decisions).
    pub windows: Vec<Window>,
    /// Templates by time saved over the last day; `None` when the store could not answer.
    pub top_templates: Option<Vec<TemplateSaving>>,
    /// Newest misses; `None` when the store could not answer.
    pub recent_misses: Option<Vec<LoggedDecision>>,
    /// Store reachability and schema.
    pub store: Health,
    /// Admissions answered fail-open (errors, store timeouts) since start, this process.
    pub fail_open: f64,
    /// Store call errors since start, this process.
    pub store_errors: f64,
    /// Recorder.
    pub recorder: RecorderHealth,
    /// Decisions dropped because the log buffer was full (the store was slow or down).
    pub dropped_decisions: u64,
}

/// Hits over cacheable decisions; `None` when there were none.
pub fn hit_ratio(counts: &[DecisionCount]) -> Option<f64> {
    let is = |c: &DecisionCount, d: Decision| c.decision == d.as_str();
    let cacheable = |c: &&DecisionCount| c.decision.parse::<Decision>().is_ok_and(Decision::is_cacheable);
    let total: i64 = counts.iter().filter(cacheable).map(|c| c.count).sum();
    let hits: i64 = counts.iter().filter(|c| is(c, Decision::Hit)).map(|c| c.count).sum();
    (total > 0).then(|| hits as f64 / total as f64)
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24;background:#fafafa}\
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}\
.sub{color:#57606a;font-size:.85rem}.cards{display:flex;gap:1rem;flex-wrap:wrap}\
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.8rem 1rem;min-width:12rem}\
.big{font-size:1.6rem;font-weight:600}table{border-collapse:collapse;background:#fff;width:100%}\
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;font-size:.85rem;vertical-align:top}\
th{background:#f0f3f6}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}\
td.reason{max-width:50rem;word-break:break-word}";

/// A counter value as a whole number (counters are non-negative; an empty float sum is -0).
fn whole(x: f64) -> u64 {
    x.round() as u64
}

fn percent(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "–".into())
}

fn health(id: &str, title: &str, h: &Health) -> String {
    let (class, word) = if h.ok { ("ok", "healthy") } else { ("bad", "unhealthy") };
    format!(
        "<div class=\"card\" id=\"{id}\"><div>{}</div><div class=\"big {class}\">{word}</div><div class=\"sub\">{}</div></div>",
        escape(title),
        escape(&h.detail)
    )
}

fn window(w: &Window) -> String {
    let id = escape(&w.id);
    let Some(counts) = &w.counts else {
        return format!(
            "<div class=\"card\" id=\"window-{id}\"><div>{}</div><div class=\"big bad\">store unavailable</div></div>",
            escape(&w.title)
        );
    };
    let get = |d: Decision| counts.iter().filter(|c| c.decision == d.as_str()).map(|c| c.count).sum::<i64>();
    let saved: f64 = counts.iter().map(|c| c.saved_seconds).sum();
    format!(
        "<div class=\"card\" id=\"window-{id}\"><div>{}</div>\
         <div>hit ratio <span class=\"big\" id=\"hit-ratio-{id}\">{}</span></div>\
         <div>time saved <span class=\"big\" id=\"saved-{id}\">{}</span></div>\
         <div class=\"sub\">{} hits · {} misses · {} errors</div></div>",
        escape(&w.title),
        percent(hit_ratio(counts)),
        escape(&human_seconds(saved)),
        get(Decision::Hit),
        get(Decision::Miss),
        get(Decision::Error),
    )
}

/// Renders the page.
pub fn render(d: &StatusData) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    h.push_str("<meta http-equiv=\"refresh\" content=\"30\"><title>stepcache status</title>");
    h.push_str(&format!("<style>{STYLE}</style></head><body>"));
    h.push_str(&format!(
        "<h1>stepcache status</h1><div class=\"sub\">generated {} · refreshes every 30 s · \
         <a href=\"/metrics\">metrics</a></div>",
        escape(&d.generated_at.to_string())
    ));

    h.push_str("<h2>Hit ratio and time saved</h2><div class=\"cards\">");
    for w in &d.windows {
        h.push_str(&window(w));
    }
    h.push_str("</div>");

    h.push_str("<h2>Health</h2><div class=\"cards\">");
    h.push_str(&health("store-health", "Store", &d.store));
    let rec = &d.recorder;
    let rec_health = if !rec.running {
        Health { ok: true, detail: "no recorder in this process (runs elsewhere, or no Kubernetes API)".into() }
    } else {
        let skipped: f64 = rec.skipped.iter().map(|(_, n)| n).sum();
        let lag = rec.mean_lag_seconds.map(|l| format!(", mean lag {l:.2}s")).unwrap_or_default();
        Health {
            ok: rec.store_failures == 0.0 && rec.watch_errors == 0.0,
            detail: format!(
                "{} recorded, {} skipped, {} store failures, {} watch errors{lag}",
                whole(rec.recorded),
                whole(skipped),
                whole(rec.store_failures),
                whole(rec.watch_errors)
            ),
        }
    };
    h.push_str(&health("recorder-health", "Recorder", &rec_health));
    let fo = Health {
        ok: d.fail_open == 0.0 && d.dropped_decisions == 0,
        detail: format!(
            "{} admissions answered fail-open, {} store errors, {} decisions not logged (since start)",
            whole(d.fail_open),
            whole(d.store_errors),
            d.dropped_decisions
        ),
    };
    h.push_str(&health("fail-open", "Fail-open", &fo));
    h.push_str("</div>");
    if !rec.skipped.is_empty() {
        h.push_str("<table id=\"recorder-skips\"><tr><th>recorder skip reason</th><th>count</th></tr>");
        for (reason, n) in &rec.skipped {
            h.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", escape(reason), whole(*n)));
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Top templates by time saved (last day)</h2>");
    match &d.top_templates {
        None => h.push_str("<p class=\"bad\" id=\"top-templates\">store unavailable</p>"),
        Some(t) if t.is_empty() => h.push_str("<p id=\"top-templates\">no hits in the last day</p>"),
        Some(t) => {
            h.push_str(
                "<table id=\"top-templates\"><tr><th>namespace</th><th>template</th><th>hits</th>\
                 <th>time saved</th></tr>",
            );
            for r in t {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&r.namespace),
                    escape(&r.template),
                    r.hits,
                    escape(&human_seconds(r.saved_seconds))
                ));
            }
            h.push_str("</table>");
        }
    }

    h.push_str("<h2>Recent misses</h2>");
    match &d.recent_misses {
        None => h.push_str("<p class=\"bad\" id=\"recent-misses\">store unavailable</p>"),
        Some(m) if m.is_empty() => h.push_str("<p id=\"recent-misses\">no misses logged</p>"),
        Some(m) => {
            h.push_str(
                "<table id=\"recent-misses\"><tr><th>when</th><th>namespace</th><th>pod</th>\
                 <th>template</th><th>reason</th></tr>",
            );
            for r in m {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td></tr>",
                    escape(&r.decided_at.to_string()),
                    escape(&r.namespace),
                    escape(&r.pod_name),
                    escape(&r.template_name),
                    escape(&r.reason)
                ));
            }
            h.push_str("</table>");
            h.push_str("<p class=\"sub\">Explain one: <code>stepcache why POD -n NAMESPACE</code></p>");
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(d: &str, n: i64, saved: f64) -> DecisionCount {
        DecisionCount { decision: d.into(), count: n, saved_seconds: saved }
    }

    #[test]
    fn hit_ratio_counts_only_decisions_that_looked_the_cache_up() {
        let c = [count("hit", 3, 30.0), count("miss", 1, 0.0), count("skipped", 100, 0.0)];
        assert_eq!(hit_ratio(&c), Some(0.75));
        assert_eq!(hit_ratio(&[count("skipped", 5, 0.0)]), None);
    }

    #[test]
    fn the_page_escapes_what_pods_control_and_has_no_script() {
        let d = StatusData {
            recent_misses: Some(vec![LoggedDecision {
                pod_name: "<script>alert(1)</script>".into(),
                reason: "a & b".into(),
                ..Default::default()
            }]),
            windows: vec![Window {
                id: "hour".into(),
                title: "Last hour".into(),
                counts: Some(vec![count("hit", 1, 252.0), count("miss", 1, 0.0)]),
            }],
            store: Health { ok: true, detail: "ok".into() },
            ..Default::default()
        };
        let html = render(&d);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a &amp; b"));
        assert!(html.contains("id=\"hit-ratio-hour\">50.0%"), "{html}");
        assert!(html.contains("id=\"saved-hour\">4m12s"), "{html}");
    }

    #[test]
    fn recorder_watch_errors_make_the_recorder_unhealthy() {
        let d = StatusData {
            recorder: RecorderHealth { running: true, recorded: 3.0, watch_errors: 2.0, ..Default::default() },
            ..Default::default()
        };
        let html = render(&d);
        assert!(html.contains("id=\"recorder-health\"><div>Recorder</div><div class=\"big bad\">unhealthy"), "{html}");
        assert!(html.contains("3 recorded, 0 skipped, 0 store failures, 2 watch errors"), "{html}");
    }

    #[test]
    fn an_unavailable_store_is_shown_not_hidden() {
        let d = StatusData {
            windows: vec![Window { id: "day".into(), title: "Last day".into(), counts: None }],
            store: Health { ok: false, detail: "store call exceeded its 1s timeout".into() },
            ..Default::default()
        };
        let html = render(&d);
        assert!(html.contains("store unavailable"));
        assert!(html.contains("0 admissions answered fail-open, 0 store errors"), "{html}");
        assert!(html.contains("id=\"store-health\"><div>Store</div><div class=\"big bad\">unhealthy"), "{html}");
    }
}
