//! `stepcache entries`, `gc` and `stats`: what operators script against.

use crate::config::{EntriesCommand, FilterArgs, Output};
use crate::store::{Entry, EntryFilter, Store};
use crate::types::{CacheKey, EntryId, Namespace};
use anyhow::{anyhow, bail};

fn filter(f: &FilterArgs, now: jiff::Timestamp) -> anyhow::Result<EntryFilter> {
    Ok(EntryFilter {
        id: f.id.map(EntryId),
        namespace: f.namespace.as_deref().map(Namespace::parse).transpose()?,
        key: f.key.as_deref().map(CacheKey::parse).transpose()?,
        workflow: f.workflow.clone(),
        image: f.image.clone(),
        finished_before: f
            .older_than
            .map(|d| {
                jiff::SignedDuration::try_from(d)
                    .ok()
                    .and_then(|d| now.checked_sub(d).ok())
                    .ok_or_else(|| anyhow!("--older-than is out of range"))
            })
            .transpose()?,
    })
}

fn state(e: &Entry, now: jiff::Timestamp) -> &'static str {
    if e.invalidated_at.is_some() {
        "invalidated"
    } else if e.run.expires_at.is_some_and(|x| x <= now) {
        "expired"
    } else {
        "live"
    }
}

fn table(rows: &[Entry], now: jiff::Timestamp) -> String {
    let mut lines = vec![vec![
        "ID".to_owned(),
        "NAMESPACE".into(),
        "WORKFLOW".into(),
        "TEMPLATE".into(),
        "STALENESS".into(),
        "FINISHED".into(),
        "HITS".into(),
        "STATE".into(),
        "KEY".into(),
    ]];
    for e in rows {
        lines.push(vec![
            e.id.to_string(),
            e.run.namespace.to_string(),
            e.run.workflow_name.clone(),
            e.run.template_name.clone(),
            e.run.staleness.to_string(),
            e.run.finished_at.to_string(),
            e.hit_count.to_string(),
            state(e, now).into(),
            e.run.key.as_str().chars().take(19).collect(),
        ]);
    }
    render(&lines)
}

/// Renders rows as aligned columns.
pub fn render(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| lines.iter().filter_map(|l| l.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(s, w)| format!("{s:<width$}", width = *w)).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Rows per invalidation statement.
const INVALIDATE_BATCH: i64 = 1000;

/// Runs an `entries` subcommand.
pub async fn run(store: &Store, cmd: &EntriesCommand) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    match cmd {
        EntriesCommand::List { filter: f, limit, output } => {
            let rows = store.list(&filter(f, now)?, *limit).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => print!("{}", table(&rows, now)),
            }
        }
        EntriesCommand::Show { id } => match store.get(EntryId(*id)).await? {
            Some(e) => println!("{}", serde_json::to_string_pretty(&e)?),
            None => bail!("no entry {id}"),
        },
        EntriesCommand::Invalidate { filter: f, now: at } => {
            let at = at.unwrap_or(now);
            let f = filter(f, at)?;
            let expected = if f.is_empty() { None } else { store.count_live(&f).await.ok() };
            let mut progress = super::progress::Reporter::new("invalidate", "entries", expected);
            let n = store.invalidate_with_progress(&f, at, INVALIDATE_BATCH, |done| progress.update(done)).await?;
            progress.finish(n);
            println!("invalidated {n} entries");
        }
    }
    Ok(())
}

/// `stepcache gc`.
pub async fn gc(store: &Store, batch: i64, now: Option<jiff::Timestamp>) -> anyhow::Result<()> {
    let now = now.unwrap_or_else(jiff::Timestamp::now);
    let backlog = store.gc_backlog(now).await.ok();
    let mut progress = super::progress::Reporter::new("gc", "rows", backlog);
    let n = store.gc_with_progress(now, batch, |done| progress.update(done)).await?;
    progress.finish(n);
    println!("deleted {n} expired or invalidated entries");
    let d = store.prune_decisions(now, batch).await?;
    if d > 0 {
        println!("pruned {d} old decisions from the decision log");
    }
    Ok(())
}

/// `stepcache stats`.
pub async fn stats(store: &Store, output: Output) -> anyhow::Result<()> {
    let rows = store.stats().await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            let mut lines = vec![vec![
                "NAMESPACE".to_owned(),
                "ENTRIES".into(),
                "RECORDED RUNS".into(),
                "ADOPTING COPIES".into(),
                "HITS".into(),
                "BYTES".into(),
                "TIME SAVED".into(),
            ]];
            for s in &rows {
                lines.push(vec![
                    s.namespace.clone().unwrap_or_else(|| "(all)".into()),
                    s.entries.to_string(),
                    s.originals.to_string(),
                    s.adopting_copies.to_string(),
                    s.hits.to_string(),
                    s.bytes.to_string(),
                    crate::admission::human_seconds(s.time_saved_seconds),
                ]);
            }
            print!("{}", render(&lines));
        }
    }
    Ok(())
}
