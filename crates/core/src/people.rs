//! Need to know for people: clearances in force, the canonical digest a grant's approvers
//! sign, and the two-person rule. Pure: `now` is passed in, keys come from the MeshPolicy.

use std::collections::BTreeSet;

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::view::MeshView;
use crate::api::{AccessPolicy, Classification, Clearance, MeshPolicySpec, OwnerKind, SubjectKind};

/// The SSH signature namespace of approvals (`ssh-keygen -Y sign -n drmesh.io/approval`):
/// a signature made for anything else (a git commit, a file) is not an approval.
pub const SIGNATURE_NAMESPACE: &str = "drmesh.io/approval";
/// Default grace after `reassessBy` before a grant is suspended.
pub const DEFAULT_REASSESSMENT_GRACE: &str = "7d";

/// A person's kind as clearances name it; `None` for subjects that are not people.
pub fn person_kind(kind: SubjectKind) -> Option<OwnerKind> {
    match kind {
        SubjectKind::User => Some(OwnerKind::User),
        SubjectKind::Group => Some(OwnerKind::Group),
        _ => None,
    }
}

/// The level a person holds at `now` (the highest of its Clearances in force) and when
/// that level ends; `None`: no clearance in force (a person reads Public products only).
pub fn clearance_in_force(
    view: &dyn MeshView,
    kind: OwnerKind,
    name: &str,
    now: Timestamp,
) -> Option<(Classification, Timestamp)> {
    held_clearance(view, kind, name, now).map(|held| (held.level, held.until))
}

/// The Clearance a person's level at `now` rests on, as an audit record names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldClearance {
    /// The Clearance object's name.
    pub name: String,
    pub level: Classification,
    pub until: Timestamp,
}

impl std::fmt::Display for HeldClearance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clearance {} ({} until {})", self.name, self.level, self.until)
    }
}

/// The Clearance in force at `now` that gives a person its level: the highest level, the
/// latest expiry among those; `None`: no clearance in force.
pub fn held_clearance(view: &dyn MeshView, kind: OwnerKind, name: &str, now: Timestamp) -> Option<HeldClearance> {
    in_force(view.clearances_of(kind, name).iter().map(|c| c.as_ref()), now)
}

fn in_force<'a>(clearances: impl Iterator<Item = &'a Clearance>, now: Timestamp) -> Option<HeldClearance> {
    let mut best: Option<HeldClearance> = None;
    for clearance in clearances {
        // An expiry that cannot be read clears nobody (fail closed).
        let Ok(until) = clearance.spec.expires_at.parse::<Timestamp>() else { continue };
        if until <= now || clearance.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let level = clearance.spec.level;
        if best.as_ref().is_some_and(|b| b.level > level || (b.level == level && b.until >= until)) {
            continue;
        }
        best = Some(HeldClearance { name: clearance.name_any(), level, until });
    }
    best
}

/// Parses a policy duration (`90d`, `36h`, `1d12h`, `30m`); `None` if it is not one.
pub fn parse_duration(text: &str) -> Option<jiff::SignedDuration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut seconds: i64 = 0;
    for (unit, factor) in [('d', 86_400i64), ('h', 3_600), ('m', 60)] {
        if let Some(at) = rest.find(unit) {
            let (number, tail) = rest.split_at(at);
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            seconds = seconds.checked_add(number.parse::<i64>().ok()?.checked_mul(factor)?)?;
            rest = &tail[1..];
        }
    }
    rest.is_empty().then(|| jiff::SignedDuration::from_secs(seconds))
}

/// The canonical form of a grant that approvers sign: its namespace, name and spec
/// without the approvals, subjects and ports sorted, object keys sorted, no spaces.
pub fn canonical(policy: &AccessPolicy) -> String {
    let mut spec = policy.spec.clone();
    spec.approvals.clear();
    spec.subjects.sort();
    if let Some(ports) = &mut spec.ports {
        ports.sort();
        ports.dedup();
    }
    let value = serde_json::json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": "AccessPolicy",
        "metadata": {"namespace": policy.namespace().unwrap_or_default(), "name": policy.name_any()},
        "spec": serde_json::to_value(&spec).unwrap_or(Value::Null),
    });
    let mut out = String::new();
    write_canonical(&value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The digest approvers sign: `sha256:` and the hex SHA-256 of [`canonical`].
pub fn digest(policy: &AccessPolicy) -> String {
    let hash = Sha256::digest(canonical(policy).as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Signs a grant's digest with an approver's key: the armored SSH signature for
/// `spec.approvals[].signature`.
pub fn sign(policy: &AccessPolicy, key: &ssh_key::PrivateKey) -> Result<String, ssh_key::Error> {
    let signature = key.sign(SIGNATURE_NAMESPACE, ssh_key::HashAlg::Sha512, digest(policy).as_bytes())?;
    signature.to_pem(ssh_key::LineEnding::LF)
}

/// What a grant's approvals amount to under the MeshPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approvals {
    /// Distinct approvers the grant needs.
    pub required: u32,
    /// Approvers whose signature over this exact spec verifies, each once.
    pub valid: Vec<String>,
    /// Approvals that count for nothing, with why.
    pub rejected: Vec<(String, String)>,
    /// Approvers who may approve this grant and have not.
    pub missing: Vec<String>,
}

impl Approvals {
    pub fn satisfied(&self) -> bool {
        self.valid.len() as u32 >= self.required
    }

    /// For people: who signed, who could still sign, what was refused.
    pub fn explain(&self) -> String {
        let mut text = format!(
            "{} of {} required approvals ({})",
            self.valid.len(),
            self.required,
            if self.valid.is_empty() { "none valid".to_string() } else { self.valid.join(", ") }
        );
        if !self.missing.is_empty() {
            text.push_str(&format!("; approvers who have not signed this spec: {}", self.missing.join(", ")));
        }
        for (approver, why) in &self.rejected {
            text.push_str(&format!("; {approver}: {why}"));
        }
        text
    }
}

/// Checks a grant's approvals against the MeshPolicy (`None`: no policy, hence no
/// approver: nothing can be approved). `consumer_side`: user names on the grant's
/// consumer side (User subjects, owners of DataProduct subjects), who do not count unless
/// the policy lets consumers approve.
pub fn check_approvals(
    policy: &AccessPolicy,
    mesh: Option<&MeshPolicySpec>,
    consumer_side: &BTreeSet<String>,
) -> Approvals {
    let namespace = policy.namespace().unwrap_or_default();
    let rules = mesh.and_then(|m| m.approvals.as_ref());
    let required = rules.map_or(2, |r| r.required.max(2));
    let mut result = Approvals { required, ..Default::default() };
    let digest = digest(policy);
    for approval in &policy.spec.approvals {
        let who = approval.approver.clone();
        let Some(approver) = rules.and_then(|r| r.approvers.iter().find(|a| a.name == who)) else {
            result.rejected.push((who, "not an approver of the MeshPolicy".into()));
            continue;
        };
        if !approver.covers(&namespace) {
            result.rejected.push((who, format!("may not approve grants of domain {namespace}")));
            continue;
        }
        if !rules.is_some_and(|r| r.consumers_may_approve) && consumer_side.contains(&who) {
            result.rejected.push((who, "is on the grant's consumer side".into()));
            continue;
        }
        let verified = ssh_key::PublicKey::from_openssh(&approver.public_key)
            .map_err(|e| format!("the MeshPolicy's key cannot be read: {e}"))
            .and_then(|key| {
                let signature = ssh_key::SshSig::from_pem(approval.signature.trim())
                    .map_err(|e| format!("the signature cannot be read: {e}"))?;
                key.verify(SIGNATURE_NAMESPACE, digest.as_bytes(), &signature).map_err(|_| {
                    "the signature does not verify over this spec (edited since, or another key)".to_string()
                })
            });
        match verified {
            Err(why) => result.rejected.push((who, why)),
            Ok(()) if result.valid.contains(&who) => result.rejected.push((who, "signed twice: counted once".into())),
            Ok(()) => result.valid.push(who),
        }
    }
    if let Some(rules) = rules {
        result.missing = rules
            .approvers
            .iter()
            .filter(|a| a.covers(&namespace) && !result.valid.contains(&a.name))
            .filter(|a| rules.consumers_may_approve || !consumer_side.contains(&a.name))
            .map(|a| a.name.clone())
            .collect();
    }
    result
}

/// User names on a grant's consumer side: its User subjects and the User owners of the
/// DataProducts it grants to.
pub fn consumer_side(view: &dyn MeshView, policy: &AccessPolicy) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for subject in &policy.spec.subjects {
        match subject.kind {
            SubjectKind::User => names.extend(subject.name.clone()),
            SubjectKind::DataProduct => {
                if let (Some(ns), Some(name)) = (&subject.namespace, &subject.name)
                    && let Some(product) = view.product(ns, name)
                {
                    names.extend(
                        product.spec.owners.iter().filter(|o| o.kind == OwnerKind::User).map(|o| o.name.clone()),
                    );
                }
            }
            _ => {}
        }
    }
    names
}
