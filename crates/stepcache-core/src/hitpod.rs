//! What a hit pod may ask for and run as, so the API server accepts it wherever it accepted the
//! original: the no-op container per OS (Windows pods forbid Linux-only security fields), its
//! resources fitted to the namespace's LimitRanges and to the original's own requests and
//! limits, and the API server's total annotation size limit.
//!
//! Owns: `NoopResources`, `NamespaceLimits`, `Milli`, `PodOs`, `fit_resources`, `sum_pod_level`,
//! `check_annotations_size`, `HitPodError`. Pure: values in, values out; LimitRanges arrive as
//! values read by the service's watch cache. Imports nothing internal.

use k8s_openapi::api::core::v1::{Capabilities, LimitRange, Pod, SeccompProfile, SecurityContext};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::{BTreeMap, BTreeSet};

/// The API server's limit on a pod's annotations, keys and values together
/// (`TotalAnnotationSizeLimitB` in apimachinery's `ValidateAnnotationsSize`): one byte more is a 422.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Why a hit cannot be served as a pod the API server would accept; the step then runs as a miss
/// (a refused create fails the Argo node, a miss only costs the run).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HitPodError {
    /// The outputs annotation (Argo ≤ 3.5) would push the annotations past the API server's limit.
    #[error(
        "the hit pod's annotations would be {bytes} bytes (keys and values), over the API server's \
         {limit}-byte limit"
    )]
    AnnotationsTooLarge {
        /// Size the annotations would have.
        bytes: usize,
        /// [`MAX_ANNOTATIONS_BYTES`].
        limit: usize,
    },
}

impl HitPodError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            HitPodError::AnnotationsTooLarge { .. } => "annotations_too_large",
        }
    }
}

/// Fails when `annotations` (keys plus values, as the API server counts them) exceed
/// [`MAX_ANNOTATIONS_BYTES`].
pub fn check_annotations_size(annotations: &BTreeMap<String, String>) -> Result<(), HitPodError> {
    let bytes: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_ANNOTATIONS_BYTES {
        return Err(HitPodError::AnnotationsTooLarge { bytes, limit: MAX_ANNOTATIONS_BYTES });
    }
    Ok(())
}

/// A resource amount in thousandths of its unit (millicores, millibytes): exact integer
/// arithmetic for LimitRange bounds, rounded up like the API server's `MilliValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Milli(pub i128);

impl Milli {
    /// Parses a Kubernetes quantity (`100m`, `0.5`, `32Mi`, `1G`, `1e3`); `None` when malformed.
    pub fn parse(s: &str) -> Option<Milli> {
        let s = s.trim();
        let (negative, rest) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(end);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return None;
        }
        let digits = format!("{int}{frac}");
        let mantissa: i128 = digits.parse().ok()?;
        let pow10 = |e: u32| 10_i128.checked_pow(e);
        let (mul, div): (i128, i128) = match suffix {
            "" => (1, 1),
            "n" => (1, 1_000_000_000),
            "u" => (1, 1_000_000),
            "m" => (1, 1_000),
            "k" => (1_000, 1),
            "M" => (pow10(6)?, 1),
            "G" => (pow10(9)?, 1),
            "T" => (pow10(12)?, 1),
            "P" => (pow10(15)?, 1),
            "E" => (pow10(18)?, 1),
            "Ki" => (1 << 10, 1),
            "Mi" => (1 << 20, 1),
            "Gi" => (1 << 30, 1),
            "Ti" => (1 << 40, 1),
            "Pi" => (1 << 50, 1),
            "Ei" => (1 << 60, 1),
            e => {
                let exp: i32 = e.strip_prefix(['e', 'E'])?.parse().ok()?;
                if exp.unsigned_abs() > 30 {
                    return None;
                }
                if exp >= 0 {
                    (pow10(exp.unsigned_abs())?, 1)
                } else {
                    (1, pow10(exp.unsigned_abs())?)
                }
            }
        };
        let num = mantissa.checked_mul(1000)?.checked_mul(mul)?;
        let den = pow10(u32::try_from(frac.len()).ok()?)?.checked_mul(div)?;
        let value = ceil_div(num, den);
        Some(Milli(if negative { -value } else { value }))
    }

    /// The amount as a quantity string: whole units when exact, else `<n>m`.
    pub fn to_quantity(self) -> Quantity {
        if self.0 % 1000 == 0 {
            Quantity(format!("{}", self.0 / 1000))
        } else {
            Quantity(format!("{}m", self.0))
        }
    }
}

/// `a / b` rounded up, for positive `b`.
fn ceil_div(a: i128, b: i128) -> i128 {
    if b <= 0 {
        return a;
    }
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

/// Requests and limits per resource name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Requests.
    pub requests: BTreeMap<String, Milli>,
    /// Limits.
    pub limits: BTreeMap<String, Milli>,
}

impl Amounts {
    /// As JSON for a container's or the pod's `resources` (quantities as strings).
    pub fn to_json(&self) -> serde_json::Value {
        let map = |m: &BTreeMap<String, Milli>| {
            m.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_quantity().0)))
                .collect::<serde_json::Map<_, _>>()
        };
        let mut out = serde_json::Map::new();
        if !self.requests.is_empty() {
            out.insert("requests".into(), serde_json::Value::Object(map(&self.requests)));
        }
        if !self.limits.is_empty() {
            out.insert("limits".into(), serde_json::Value::Object(map(&self.limits)));
        }
        serde_json::Value::Object(out)
    }
}

/// What each no-op container asks for before the namespace's LimitRanges and the original pod
/// have their say (`--noop-requests`, `--noop-limits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoopResources(pub Amounts);

impl Default for NoopResources {
    /// 10m / 16Mi requested, 100m / 32Mi limit: enough for a binary that exits at once.
    fn default() -> Self {
        let m = |pairs: [(&str, i128); 2]| pairs.iter().map(|(k, v)| ((*k).to_owned(), Milli(*v))).collect();
        NoopResources(Amounts {
            requests: m([("cpu", 10), ("memory", 16 * 1024 * 1024 * 1000)]),
            limits: m([("cpu", 100), ("memory", 32 * 1024 * 1024 * 1000)]),
        })
    }
}

/// One resource's bounds from LimitRanges: the largest minimum, the smallest maximum, the
/// smallest limit/request ratio (every LimitRange of a namespace applies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// `min`.
    pub min: Option<Milli>,
    /// `max`.
    pub max: Option<Milli>,
    /// `maxLimitRequestRatio`.
    pub max_ratio: Option<Milli>,
}

impl Bounds {
    fn tighten(&mut self, min: Option<Milli>, max: Option<Milli>, ratio: Option<Milli>) {
        self.min = self.min.max(min);
        self.max = match (self.max, max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_ratio = match (self.max_ratio, ratio) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The LimitRange constraints of one namespace that bind a pod's containers (`type: Container`)
/// and the pod as a whole (`type: Pod`), merged across its LimitRanges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceLimits {
    /// Per container, by resource name.
    pub container: BTreeMap<String, Bounds>,
    /// Per pod (sums over containers), by resource name.
    pub pod: BTreeMap<String, Bounds>,
}

impl NamespaceLimits {
    /// Merges a namespace's LimitRanges; quantities that do not parse (the API server validated
    /// them) and PersistentVolumeClaim items are ignored.
    pub fn from_limit_ranges<'a>(ranges: impl IntoIterator<Item = &'a LimitRange>) -> NamespaceLimits {
        let mut out = NamespaceLimits::default();
        for item in ranges.into_iter().filter_map(|r| r.spec.as_ref()).flat_map(|s| s.limits.iter()) {
            let target = match item.type_.as_str() {
                "Container" => &mut out.container,
                "Pod" => &mut out.pod,
                _ => continue,
            };
            let get = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
                m.as_ref().and_then(|m| m.get(k)).and_then(|q| Milli::parse(&q.0))
            };
            let names: BTreeSet<&String> = [&item.min, &item.max, &item.max_limit_request_ratio]
                .into_iter()
                .flatten()
                .flat_map(|m| m.keys())
                .collect();
            for name in names {
                let b = target.entry(name.clone()).or_default();
                b.tighten(get(&item.min, name), get(&item.max, name), get(&item.max_limit_request_ratio, name));
            }
        }
        out
    }
}

/// What the original pod asked for in total, as ResourceQuota counts it: pod-level
/// `spec.resources` when set, else the sum over containers (or the largest init container, if
/// larger). A resource no container names is absent: nothing to stay under.
pub fn sum_original_resources(pod: &Pod) -> Amounts {
    let mut out = Amounts::default();
    let Some(spec) = pod.spec.as_ref() else { return out };
    type Pick = fn(&k8s_openapi::api::core::v1::ResourceRequirements) -> Option<&BTreeMap<String, Quantity>>;
    let sides: [(Pick, &mut BTreeMap<String, Milli>); 2] =
        [(|r| r.requests.as_ref(), &mut out.requests), (|r| r.limits.as_ref(), &mut out.limits)];
    for (pick, total) in sides {
        let mut sum: BTreeMap<String, Milli> = BTreeMap::new();
        for c in &spec.containers {
            for (k, q) in c.resources.as_ref().and_then(pick).into_iter().flatten() {
                if let Some(v) = Milli::parse(&q.0) {
                    sum.entry(k.clone()).or_insert(Milli(0)).0 += v.0;
                }
            }
        }
        for c in spec.init_containers.iter().flatten() {
            for (k, q) in c.resources.as_ref().and_then(pick).into_iter().flatten() {
                if let Some(v) = Milli::parse(&q.0) {
                    let e = sum.entry(k.clone()).or_insert(Milli(0));
                    *e = (*e).max(v);
                }
            }
        }
        for (k, q) in spec.resources.as_ref().and_then(pick).into_iter().flatten() {
            if let Some(v) = Milli::parse(&q.0) {
                sum.insert(k.clone(), v);
            }
        }
        *total = sum;
    }
    out
}

/// Resources whose request may be below their limit; the API server requires request = limit
/// for every other (extended resources, hugepages).
fn overcommittable(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
}

/// Requests and limits of each of `n` no-op containers: the configured amounts, no more than
/// the original pod asked for in total (so a quota that admitted it admits the hit pod), then
/// raised to the namespace's minimums, lowered to its maximums and brought within its
/// limit/request ratios (`type: Pod` bounds are shared among the `n` containers).
pub fn fit_resources(cfg: &NoopResources, limits: &NamespaceLimits, original: &Amounts, n: usize) -> Amounts {
    let n = i128::try_from(n.max(1)).unwrap_or(1);
    let names: BTreeSet<&String> = cfg
        .0
        .requests
        .keys()
        .chain(cfg.0.limits.keys())
        .chain(limits.container.keys())
        .chain(limits.pod.keys())
        .collect();
    let mut out = Amounts::default();
    for name in names {
        let c = limits.container.get(name).copied().unwrap_or_default();
        let p = limits.pod.get(name).copied().unwrap_or_default();
        let min = c.min.max(p.min.map(|m| Milli(ceil_div(m.0, n))));
        let max = match (c.max, p.max.map(|m| Milli(m.0 / n))) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let ratio = match (c.max_ratio, p.max_ratio) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let share = |m: Option<&Milli>| m.map(|v| Milli(v.0 / n));
        let mut req = cfg.0.requests.get(name).copied();
        let mut lim = cfg.0.limits.get(name).copied();
        if let (Some(r), Some(cap)) = (req, share(original.requests.get(name))) {
            req = Some(r.min(cap));
        }
        if let (Some(l), Some(cap)) = (lim, share(original.limits.get(name))) {
            lim = Some(l.min(cap));
        }
        if let Some(m) = min {
            req = Some(req.unwrap_or(m).max(m));
            lim = lim.map(|l| l.max(m));
        }
        if let Some(m) = max {
            lim = Some(lim.unwrap_or(m).min(m));
            req = req.map(|r| r.min(m));
        }
        if let Some(ratio) = ratio.filter(|r| r.0 > 0) {
            let l = lim.or(req).unwrap_or(Milli(1));
            lim = Some(l);
            let floor = Milli(ceil_div(l.0.saturating_mul(1000), ratio.0).max(1));
            req = Some(req.unwrap_or(floor).max(floor));
        }
        if let (Some(r), Some(l)) = (req, lim) {
            if r > l {
                lim = Some(r);
            }
        }
        if !overcommittable(name) {
            let both = req.max(lim);
            if both.is_some() {
                (req, lim) = (both, both);
            }
        }
        if let Some(r) = req {
            out.requests.insert(name.clone(), r);
        }
        if let Some(l) = lim {
            out.limits.insert(name.clone(), l);
        }
    }
    out
}

/// The pod-level `spec.resources` of a hit pod with `n` containers of `each`: their sums, for
/// the resources pod-level resources accept (cpu, memory).
pub fn sum_pod_level(each: &Amounts, n: usize) -> Amounts {
    let n = i128::try_from(n.max(1)).unwrap_or(1);
    let sum = |m: &BTreeMap<String, Milli>| {
        m.iter()
            .filter(|(k, _)| matches!(k.as_str(), "cpu" | "memory"))
            .map(|(k, v)| (k.clone(), Milli(v.0.saturating_mul(n))))
            .collect()
    };
    Amounts { requests: sum(&each.requests), limits: sum(&each.limits) }
}

/// The operating system a pod runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodOs {
    /// Linux (also when the pod does not say).
    Linux,
    /// Windows: `spec.os.name: windows` or a `kubernetes.io/os: windows` node selector.
    Windows,
}

/// The node label that names a node's OS, kept on hit pods so a Windows no-op lands on Windows.
pub const OS_LABEL: &str = "kubernetes.io/os";
/// The node label that names a node's architecture, kept on hit pods like [`OS_LABEL`].
pub const ARCH_LABEL: &str = "kubernetes.io/arch";

/// Which OS `pod` runs on.
pub fn pod_os(pod: &Pod) -> PodOs {
    let spec = pod.spec.as_ref();
    let by_field = spec.and_then(|s| s.os.as_ref()).map(|o| o.name.as_str());
    let by_selector = spec.and_then(|s| s.node_selector.as_ref()).and_then(|m| m.get(OS_LABEL)).map(String::as_str);
    if by_field.or(by_selector) == Some("windows") {
        PodOs::Windows
    } else {
        PodOs::Linux
    }
}

/// The default Linux no-op security context: passes Pod Security `restricted` and OpenShift's
/// `restricted-v2` SCC. No fixed `runAsUser`: restricted-v2 refuses a uid outside the
/// namespace's range, and the image's numeric non-root `USER` (or the SCC's uid) applies.
pub fn default_linux_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    }
}

/// The default Windows no-op security context: non-administrator, and none of the fields the
/// API server forbids when `spec.os.name` is `windows`.
pub fn default_windows_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        windows_options: Some(k8s_openapi::api::core::v1::WindowsSecurityContextOptions {
            run_as_user_name: Some("ContainerUser".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `sc` without the container fields pod validation forbids for `spec.os.name: windows`
/// (appArmorProfile, seLinuxOptions, runAsUser, runAsGroup, seccompProfile, capabilities,
/// readOnlyRootFilesystem, privileged, allowPrivilegeEscalation, procMount).
pub fn strip_linux_only(sc: &SecurityContext) -> SecurityContext {
    SecurityContext {
        run_as_non_root: sc.run_as_non_root,
        windows_options: sc.windows_options.clone(),
        ..Default::default()
    }
}

/// `sc` for a no-op in `pod`: unchanged, except that `runAsNonRoot` is left out when the pod
/// itself runs as uid 0 and `sc` names no uid (the kubelet would refuse to start it, and the
/// namespace evidently lets the step run as root).
pub fn adapt_security_context(sc: &SecurityContext, pod: &Pod) -> SecurityContext {
    let pod_uid = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|p| p.run_as_user);
    let mut out = sc.clone();
    if pod_uid == Some(0) && sc.run_as_user.is_none() && sc.run_as_non_root == Some(true) {
        out.run_as_non_root = None;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LimitRangeItem, LimitRangeSpec};

    fn q(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect())
    }

    fn range(items: Vec<LimitRangeItem>) -> LimitRange {
        LimitRange { spec: Some(LimitRangeSpec { limits: items }), ..Default::default() }
    }

    fn item(ty: &str) -> LimitRangeItem {
        LimitRangeItem { type_: ty.into(), ..Default::default() }
    }

    fn m(s: &str) -> Milli {
        Milli::parse(s).unwrap()
    }

    #[test]
    fn quantities_parse_to_exact_thousandths_in_every_notation() {
        assert_eq!(m("100m"), Milli(100));
        assert_eq!(m("0.5"), Milli(500));
        assert_eq!(m("2"), Milli(2000));
        assert_eq!(m("32Mi"), Milli(32 * 1024 * 1024 * 1000));
        assert_eq!(m("1G"), Milli(1_000_000_000_000));
        assert_eq!(m("1e3"), Milli(1_000_000));
        assert_eq!(m("1n"), Milli(1), "rounded up like MilliValue");
        assert_eq!(m("1.5"), Milli(1500));
        assert!(Milli::parse("abc").is_none());
        assert!(Milli::parse("1Xi").is_none());
        assert_eq!(Milli(1500).to_quantity().0, "1500m");
        assert_eq!(Milli(33554432000).to_quantity().0, "33554432");
    }

    #[test]
    fn a_namespace_without_limit_ranges_leaves_the_configured_amounts() {
        let fit = fit_resources(&NoopResources::default(), &NamespaceLimits::default(), &Amounts::default(), 1);
        assert_eq!(fit, NoopResources::default().0);
    }

    #[test]
    fn a_container_minimum_raises_requests_and_limits_to_it() {
        let mut i = item("Container");
        i.min = q(&[("cpu", "50m"), ("memory", "32Mi")]);
        let limits = NamespaceLimits::from_limit_ranges([&range(vec![i])]);
        let fit = fit_resources(&NoopResources::default(), &limits, &Amounts::default(), 1);
        assert_eq!(fit.requests["cpu"], m("50m"));
        assert_eq!(fit.requests["memory"], m("32Mi"));
        assert_eq!(fit.limits["cpu"], m("100m"), "the limit was already above the minimum");
        assert_eq!(fit.limits["memory"], m("32Mi"));
    }

    #[test]
    fn a_container_maximum_lowers_limits_to_it() {
        let mut i = item("Container");
        i.max = q(&[("cpu", "50m"), ("memory", "20Mi")]);
        let limits = NamespaceLimits::from_limit_ranges([&range(vec![i])]);
        let fit = fit_resources(&NoopResources::default(), &limits, &Amounts::default(), 1);
        assert_eq!(fit.limits["cpu"], m("50m"));
        assert_eq!(fit.limits["memory"], m("20Mi"));
        assert_eq!(fit.requests["cpu"], m("10m"));
    }

    #[test]
    fn a_limit_request_ratio_raises_the_request_until_it_holds() {
        let mut i = item("Container");
        i.max_limit_request_ratio = q(&[("cpu", "2"), ("memory", "1")]);
        let limits = NamespaceLimits::from_limit_ranges([&range(vec![i])]);
        let fit = fit_resources(&NoopResources::default(), &limits, &Amounts::default(), 1);
        assert_eq!(fit.requests["cpu"], m("50m"), "100m limit / ratio 2");
        assert_eq!(fit.requests["memory"], fit.limits["memory"]);
    }

    #[test]
    fn several_limit_ranges_bind_together_and_pod_bounds_are_shared_among_containers() {
        let mut a = item("Container");
        a.min = q(&[("cpu", "20m")]);
        let mut b = item("Container");
        b.min = q(&[("cpu", "40m")]);
        let mut p = item("Pod");
        p.min = q(&[("memory", "90Mi")]);
        let limits = NamespaceLimits::from_limit_ranges([&range(vec![a]), &range(vec![b, p])]);
        let fit = fit_resources(&NoopResources::default(), &limits, &Amounts::default(), 3);
        assert_eq!(fit.requests["cpu"], m("40m"));
        assert_eq!(fit.requests["memory"], m("30Mi"), "90Mi over three no-op containers");
    }

    #[test]
    fn a_minimum_on_a_resource_the_no_op_does_not_ask_for_is_requested() {
        let mut i = item("Container");
        i.min = q(&[("ephemeral-storage", "1Mi")]);
        let limits = NamespaceLimits::from_limit_ranges([&range(vec![i])]);
        let fit = fit_resources(&NoopResources::default(), &limits, &Amounts::default(), 1);
        assert_eq!(fit.requests["ephemeral-storage"], m("1Mi"));
    }

    #[test]
    fn the_no_op_never_asks_for_more_than_the_original_did() {
        let original = Amounts {
            requests: [("cpu".to_owned(), m("5m"))].into(),
            limits: [("memory".to_owned(), m("20Mi"))].into(),
        };
        let fit = fit_resources(&NoopResources::default(), &NamespaceLimits::default(), &original, 1);
        assert_eq!(fit.requests["cpu"], m("5m"));
        assert_eq!(fit.limits["memory"], m("20Mi"));
        assert_eq!(fit.requests["memory"], m("16Mi"));
    }

    #[test]
    fn original_totals_count_containers_and_prefer_pod_level_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {
            "containers": [
                {"name": "main", "resources": {"requests": {"cpu": "1"}}},
                {"name": "wait", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
            ],
            "initContainers": [{"name": "init", "resources": {"requests": {"memory": "128Mi"}}}]
        }}))
        .unwrap();
        let t = sum_original_resources(&pod);
        assert_eq!(t.requests["cpu"], m("1100m"));
        assert_eq!(t.requests["memory"], m("128Mi"), "the largest init container, if larger");
        let mut with_pod_level = pod.clone();
        with_pod_level.spec.as_mut().unwrap().resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: q(&[("cpu", "2")]),
            ..Default::default()
        });
        assert_eq!(sum_original_resources(&with_pod_level).requests["cpu"], m("2"));
    }

    #[test]
    fn annotations_over_256_kib_are_refused_and_at_the_limit_are_not() {
        let key = "k".to_owned();
        let at: BTreeMap<String, String> = [(key.clone(), "v".repeat(MAX_ANNOTATIONS_BYTES - 1))].into();
        assert!(check_annotations_size(&at).is_ok());
        let over: BTreeMap<String, String> = [(key, "v".repeat(MAX_ANNOTATIONS_BYTES))].into();
        let err = check_annotations_size(&over).unwrap_err();
        assert_eq!(
            err,
            HitPodError::AnnotationsTooLarge { bytes: MAX_ANNOTATIONS_BYTES + 1, limit: MAX_ANNOTATIONS_BYTES }
        );
        assert_eq!(err.kind(), "annotations_too_large");
    }

    #[test]
    fn stripping_linux_only_fields_keeps_what_windows_pods_may_set() {
        let sc = strip_linux_only(&default_linux_security_context());
        assert_eq!(sc, SecurityContext { run_as_non_root: Some(true), ..Default::default() });
    }
}
