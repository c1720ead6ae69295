//! Which grants and products a change of a person's Clearance re-decides.
//!
//! A Clearance names one User or Group. Its edit may move it to another person (or make
//! it unparseable): both the person it named and the one it names now are re-decided, so
//! that a clearance moved away from someone revokes their access at once.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Resource;
use kube::core::DeserializeGuard;

use crate::api::{AccessPolicy, Clearance, DataProduct, OwnerKind, SubjectKind};

/// A User or a Group.
pub type Person = (OwnerKind, String);

/// The person each Clearance named when last seen, by UID.
#[derive(Default)]
pub struct ClearanceSubjects(Mutex<HashMap<String, Person>>);

impl ClearanceSubjects {
    /// The people a Clearance's change concerns: the one it named before and the one it
    /// names now (none when deleted or unparseable).
    pub fn changed(&self, clearance: &DeserializeGuard<Clearance>) -> Vec<Person> {
        let uid = clearance.meta().uid.clone().unwrap_or_default();
        let deleted = clearance.meta().deletion_timestamp.is_some();
        let now = clearance.0.as_ref().ok().map(|c| (c.spec.subject.kind, c.spec.subject.name.clone()));
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let before = match (&now, deleted) {
            (Some(person), false) => seen.insert(uid, person.clone()),
            _ => seen.remove(&uid),
        };
        let mut people: Vec<Person> = before.into_iter().chain(now).collect();
        people.sort();
        people.dedup();
        people
    }
}

/// Whether a grant names one of `people` as a subject.
pub fn names(policy: &AccessPolicy, people: &[Person]) -> bool {
    policy.spec.subjects.iter().any(|s| {
        let kind = match s.kind {
            SubjectKind::User => OwnerKind::User,
            SubjectKind::Group => OwnerKind::Group,
            _ => return false,
        };
        people.iter().any(|(k, n)| *k == kind && s.name.as_deref() == Some(n.as_str()))
    })
}

/// Whether one of `people` owns a product.
pub fn owned_by(product: &DataProduct, people: &[Person]) -> bool {
    product.spec.owners.iter().any(|o| people.iter().any(|(k, n)| *k == o.kind && *n == o.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Classification, ClearanceSpec, Person as Subject};

    fn clearance(uid: &str, kind: OwnerKind, name: &str) -> DeserializeGuard<Clearance> {
        let mut c = Clearance::new(
            "c",
            ClearanceSpec {
                subject: Subject { kind, name: name.into() },
                level: Classification::Restricted,
                expires_at: "2030-01-01T00:00:00Z".into(),
                reason: "habilitation decision 42".into(),
            },
        );
        c.metadata.uid = Some(uid.into());
        DeserializeGuard(Ok(c))
    }

    #[test]
    fn a_clearance_moved_to_another_person_re_decides_both() {
        let seen = ClearanceSubjects::default();
        assert_eq!(seen.changed(&clearance("u1", OwnerKind::Group, "cnc")), vec![(OwnerKind::Group, "cnc".into())]);
        let moved = seen.changed(&clearance("u1", OwnerKind::User, "alice"));
        assert_eq!(moved, vec![(OwnerKind::User, "alice".into()), (OwnerKind::Group, "cnc".into())]);
        // Unparseable now: the person it named is re-decided (its clearance no longer counts).
        let mut metadata = kube::api::ObjectMeta::default();
        metadata.uid = Some("u1".into());
        let broken = DeserializeGuard(Err(kube::core::error_boundary::InvalidObject { error: "bad".into(), metadata }));
        assert_eq!(seen.changed(&broken), vec![(OwnerKind::User, "alice".into())]);
        assert!(seen.changed(&broken).is_empty(), "forgotten once re-decided");
    }
}
