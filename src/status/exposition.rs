//! Reads the Prometheus text exposition back into samples: the status page shows health from
//! the process's own metrics, and the dashboard test checks queries against a real scrape.
//! Pure: text in, values out.
//!
//! Owns: `Exposition`, `Sample`, `parse`.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series name as exposed (`stepcache_x_total`, `..._bucket`).
    pub name: String,
    /// Label names to values.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// Every sample.
    pub samples: Vec<Sample>,
    /// Family name → type (`counter`, `histogram`, `gauge`, ...) from `# TYPE` lines.
    pub families: BTreeMap<String, String>,
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include every `(k, v)` of `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| matching.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }

    /// Values of `label` among samples named `name`, with each value's summed samples.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            if let Some(v) = s.labels.get(label) {
                *out.entry(v.clone()).or_insert(0.0) += s.value;
            }
        }
        out
    }
}

/// Parses exposition text; malformed lines are skipped.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(t)) = (it.next(), it.next()) {
                out.families.insert(n.to_owned(), t.to_owned());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = sample(line) {
            out.samples.push(s);
        }
    }
    out
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line.get(..name_end)?.to_owned();
    let mut rest = line.get(name_end..)?;
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(body)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name, labels, value })
}

/// Parses `k="v",...}` and returns the labels and the text after `}`.
fn label_set(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches(',').trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s.get(..eq)?.trim().to_owned();
        s = s.get(eq + 1..)?.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        s = s.get(end + 1..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_labels_and_types_are_read_back() {
        let text = "# HELP stepcache_x Things.\n# TYPE stepcache_x counter\n\
                    stepcache_x_total{decision=\"hit\",namespace=\"a\\\"b\"} 3\n\
                    stepcache_x_total{decision=\"miss\",namespace=\"a\"} 1.5\n\
                    stepcache_y 7\n# EOF\n";
        let e = parse(text);
        assert_eq!(e.families.get("stepcache_x").map(String::as_str), Some("counter"));
        assert_eq!(e.samples.len(), 3);
        assert_eq!(e.samples[0].labels.get("namespace").map(String::as_str), Some("a\"b"));
        assert_eq!(e.sum("stepcache_x_total", &[]), 4.5);
        assert_eq!(e.sum("stepcache_x_total", &[("decision", "miss")]), 1.5);
        assert_eq!(e.sum("stepcache_y", &[]), 7.0);
        assert_eq!(e.by_label("stepcache_x_total", "decision").get("hit"), Some(&3.0));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let e = parse("stepcache_x{a=\"1\" 2\nstepcache_y nope\nstepcache_z 1\n");
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.samples[0].name, "stepcache_z");
    }
}
