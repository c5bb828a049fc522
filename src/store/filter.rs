//! Selecting entries: [`EntryFilter`] (what `list`, `invalidate` and `count_live` take) and the
//! WHERE clause with numbered placeholders it becomes.

use super::{rows, Backend, StoreError};
use crate::types::{CacheKey, EntryId, Namespace};
use jiff::Timestamp;

/// Selects entries for listing and invalidation; unset fields match everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryFilter {
    /// This entry and its adopting copies (invalidating an original must take its copies).
    pub id: Option<EntryId>,
    /// Entries of one namespace.
    pub namespace: Option<Namespace>,
    /// Entries of one key.
    pub key: Option<CacheKey>,
    /// Entries recorded by one workflow (by name).
    pub workflow: Option<String>,
    /// Matches the image string or the image digest of any container: an exact image
    /// (`repo:tag`, `repo@sha256:…`) or imageID, or a bare digest (`sha256:…`) that an
    /// imageID ends with.
    pub image: Option<String>,
    /// Entries that finished before this instant.
    pub finished_before: Option<Timestamp>,
}

impl EntryFilter {
    /// True when nothing is selected, i.e. the filter would match the whole table.
    pub fn is_empty(&self) -> bool {
        *self == EntryFilter::default()
    }
}

/// A bind value of a dynamically built statement.
enum Arg {
    Int(i64),
    Text(String),
}

/// A WHERE clause built from an [`EntryFilter`], numbering placeholders from `first`.
pub(super) struct Where {
    first: usize,
    conds: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    pub(super) fn new(first: usize) -> Where {
        Where { first, conds: Vec::new(), args: Vec::new() }
    }

    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.first + self.args.len() - 1)
    }

    pub(super) fn next_placeholder(&self) -> String {
        format!("${}", self.first + self.args.len())
    }

    pub(super) fn build(backend: Backend, f: &EntryFilter, first: usize) -> Result<Where, StoreError> {
        let mut w = Where::new(first);
        if let Some(id) = f.id {
            let p = w.arg(Arg::Int(id.0));
            w.conds.push(format!("(id = {p} OR source_id = {p})"));
        }
        if let Some(ns) = &f.namespace {
            let p = w.arg(Arg::Text(ns.as_str().to_owned()));
            w.conds.push(format!("namespace = {p}"));
        }
        if let Some(k) = &f.key {
            let p = w.arg(Arg::Text(k.as_str().to_owned()));
            w.conds.push(format!("cache_key = {p}"));
        }
        if let Some(wf) = &f.workflow {
            let p = w.arg(Arg::Text(wf.clone()));
            w.conds.push(format!("workflow_name = {p}"));
        }
        if let Some(image) = &f.image {
            // The maps are stored as compact JSON, so `:"<value>"` is exactly "some container's
            // value is <value>", and `@<digest>"` is "some imageID ends with @<digest>".
            let quoted = rows::to_json("image filter", image.as_str())?;
            let exact = w.arg(Arg::Text(format!(":{quoted}")));
            let suffix = w.arg(Arg::Text(format!("@{}", quoted.strip_prefix('"').unwrap_or(&quoted))));
            w.conds.push(format!(
                "({} OR {} OR {})",
                backend.contains("images", &exact),
                backend.contains("image_digests", &exact),
                backend.contains("image_digests", &suffix)
            ));
        }
        if let Some(t) = f.finished_before {
            let p = w.arg(Arg::Int(t.as_millisecond()));
            w.conds.push(format!("finished_at < {p}"));
        }
        Ok(w)
    }

    pub(super) fn sql(&self) -> String {
        if self.conds.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.conds.join(" AND ")
        }
    }

    pub(super) fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_str()),
            };
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_is_detected() {
        assert!(EntryFilter::default().is_empty());
        assert!(!EntryFilter { workflow: Some("w".into()), ..Default::default() }.is_empty());
    }

    #[test]
    fn filter_placeholders_number_from_the_given_start() {
        let f = EntryFilter {
            id: Some(EntryId(3)),
            workflow: Some("wf".into()),
            image: Some("nginx:1".into()),
            ..Default::default()
        };
        let w = Where::build(Backend::Postgres, &f, 2).unwrap_or_else(|_| Where::new(0));
        assert_eq!(w.sql(), "(id = $2 OR source_id = $2) AND workflow_name = $3 AND (strpos(images, $4) > 0 OR strpos(image_digests, $4) > 0 OR strpos(image_digests, $5) > 0)");
        assert_eq!(w.next_placeholder(), "$6");
    }
}
