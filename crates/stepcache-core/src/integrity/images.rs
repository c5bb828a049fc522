//! Image drift without a registry (pure): naming an image tag the way the cluster reports it,
//! reading the digest out of a container's `imageID`, and deciding whether an entry ran a
//! digest that its tag no longer points at.
//!
//! The newest digest of a tag is learned from pods (the recorder feeds every container it sees
//! into the store), so no registry credentials are needed; the price is a window in which a
//! moved tag is not seen yet (until a pod pulls the new digest and the recorder sees it).

use std::collections::BTreeMap;

/// How long a tag's newest digest is remembered without a new observation; the gc loop forgets
/// older ones, which bounds the map by the tags in recent use.
pub const TAG_MEMORY: jiff::SignedDuration = jiff::SignedDuration::from_hours(90 * 24);

/// Default registry of references without one (what the container runtime assumes).
const DEFAULT_REGISTRY: &str = "docker.io";

/// A container image as written in a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// Pinned by digest: the bytes cannot move, no check needed.
    Pinned,
    /// A tag (explicit or the implied `latest`), normalized as `registry/repo:tag`.
    Tag(String),
}

/// Normalizes `image` to `registry/repo:tag` (`python:3.7` → `docker.io/library/python:3.7`),
/// or says it is pinned by digest. Empty or malformed references are treated as pinned
/// (nothing to compare).
pub fn parse_image(image: &str) -> ImageRef {
    let image = image.trim();
    if image.is_empty() || image.contains('@') {
        return ImageRef::Pinned;
    }
    let (name, tag) = match image.rsplit_once(':') {
        // a ':' after the last '/' separates the tag; before it, it is a registry port
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    };
    if name.is_empty() || tag.is_empty() {
        return ImageRef::Pinned;
    }
    let first = name.split('/').next().unwrap_or("");
    let has_registry = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        name.to_owned()
    } else if name.contains('/') {
        format!("{DEFAULT_REGISTRY}/{name}")
    } else {
        format!("{DEFAULT_REGISTRY}/library/{name}")
    };
    ImageRef::Tag(format!("{}:{tag}", full.to_ascii_lowercase()))
}

/// The content digest (`sha256:…`) in a container status `imageID` (`docker-pullable://r@sha256:…`,
/// `r@sha256:…`, or a bare `sha256:…`), if it carries one.
pub fn digest_of(image_id: &str) -> Option<&str> {
    let d = image_id.rsplit_once('@').map(|(_, d)| d).unwrap_or(image_id);
    let (algo, hex) = d.split_once(':')?;
    (!algo.is_empty() && !hex.is_empty() && !algo.contains('/') && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(d)
}

/// What an admission must know to check drift: for each container of the pod running a tag,
/// the normalized tag and the digest the entry ran it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagUse {
    /// Container name.
    pub container: String,
    /// Normalized `registry/repo:tag`.
    pub tag: String,
    /// Digest the entry's run resolved the tag to.
    pub ran: String,
}

/// The tags to compare for a hit: containers of the admitted pod (`name → image`) that run a
/// tag and for which the entry recorded a digest. Containers the entry did not record (or whose
/// imageID carries no digest) cannot be compared and are left out.
pub fn tags_to_check(pod_images: &BTreeMap<String, String>, entry_digests: &BTreeMap<String, String>) -> Vec<TagUse> {
    pod_images
        .iter()
        .filter_map(|(container, image)| {
            let ImageRef::Tag(tag) = parse_image(image) else { return None };
            let ran = digest_of(entry_digests.get(container)?)?;
            Some(TagUse { container: container.clone(), tag, ran: ran.to_owned() })
        })
        .collect()
}

/// The first tag whose newest observed digest differs from the one the entry ran, as
/// `container: tag moved from <ran> to <now>`; `None` when nothing moved (or nothing is known).
pub fn moved(uses: &[TagUse], newest: &BTreeMap<String, String>) -> Option<String> {
    uses.iter().find_map(|u| {
        let now = newest.get(&u.tag)?;
        (now != &u.ran).then(|| format!("{}: {} moved from {} to {}", u.container, u.tag, u.ran, now))
    })
}

/// Tag observations in a finished or running pod: `(normalized tag, digest)` for every
/// container status whose spec image is a tag and whose imageID carries a digest.
pub fn observations<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .filter_map(|(image, image_id)| match parse_image(image) {
            ImageRef::Tag(t) => digest_of(image_id).map(|d| (t, d.to_owned())),
            ImageRef::Pinned => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalized_like_the_runtime_does() {
        assert_eq!(parse_image("python:3.7"), ImageRef::Tag("docker.io/library/python:3.7".into()));
        assert_eq!(parse_image("python"), ImageRef::Tag("docker.io/library/python:latest".into()));
        assert_eq!(parse_image("argoproj/argoexec:v3.5.0"), ImageRef::Tag("docker.io/argoproj/argoexec:v3.5.0".into()));
        assert_eq!(
            parse_image("ghcr.io/Example/featurize:1.4.2"),
            ImageRef::Tag("ghcr.io/example/featurize:1.4.2".into())
        );
        assert_eq!(parse_image("localhost:5000/app"), ImageRef::Tag("localhost:5000/app:latest".into()));
        assert_eq!(parse_image("registry:5000/team/app:v1"), ImageRef::Tag("registry:5000/team/app:v1".into()));
        assert_eq!(parse_image("ghcr.io/x/y@sha256:abcd"), ImageRef::Pinned);
        assert_eq!(parse_image("ghcr.io/x/y:1@sha256:abcd"), ImageRef::Pinned);
        assert_eq!(parse_image(""), ImageRef::Pinned);
    }

    #[test]
    fn digests_are_read_from_every_image_id_form() {
        let d = "sha256:4f1c2d9e";
        assert_eq!(digest_of("docker-pullable://python@sha256:4f1c2d9e"), Some(d));
        assert_eq!(digest_of("docker.io/library/python@sha256:4f1c2d9e"), Some(d));
        assert_eq!(digest_of("sha256:4f1c2d9e"), Some(d));
        assert_eq!(digest_of("python:3.7"), None);
        assert_eq!(digest_of(""), None);
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_tag_that_moved_is_reported_and_a_pinned_image_is_never_checked() {
        let pod = map(&[("main", "python:3.7"), ("side", "ghcr.io/x/y@sha256:cc")]);
        let entry = map(&[("main", "docker-pullable://python@sha256:aa"), ("side", "ghcr.io/x/y@sha256:cc")]);
        let uses = tags_to_check(&pod, &entry);
        assert_eq!(uses.len(), 1, "only the tag is checked: {uses:?}");
        let same = map(&[("docker.io/library/python:3.7", "sha256:aa")]);
        assert_eq!(moved(&uses, &same), None);
        assert_eq!(moved(&uses, &BTreeMap::new()), None, "a tag never observed is not a move");
        let newer = map(&[("docker.io/library/python:3.7", "sha256:bb")]);
        let why = moved(&uses, &newer).unwrap_or_default();
        assert!(why.contains("sha256:aa") && why.contains("sha256:bb"), "{why}");
    }

    #[test]
    fn observations_skip_pinned_images_and_ids_without_digest() {
        let obs = observations([
            ("python:3.7", "docker-pullable://python@sha256:aa"),
            ("ghcr.io/x/y@sha256:cc", "ghcr.io/x/y@sha256:cc"),
            ("busybox", ""),
        ]);
        assert_eq!(obs, vec![("docker.io/library/python:3.7".to_owned(), "sha256:aa".to_owned())]);
    }
}
