//! Overriding a hold: a person with the `override_holds` permission lifts hold reasons the
//! rules mark overridable, with a written reason. Unlike an approval nobody else decides: the
//! override is one event (`order.overridden`) naming who, in which role, which reasons and why.
//! Hard blocks (an unusable address, missing documents — which is where dangerous goods
//! without their declaration land —, stock that is not there, credit and payment, a rule that
//! failed) are not overridable unless the policy says so; see `docs/policy.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{self, Permission};
use crate::validate::FieldError;
use crate::vocab::{HoldReason, Role};

/// Longest override reason accepted (the same bound as an approval's reason).
pub const MAX_NOTE: usize = 2000;

/// Whether a hold reason may be overridden when the policy does not say: the soft holds
/// (a missed cut-off, a carrier that is down, a policy rule's own hold) are; the hard blocks
/// and the holds that belong to finance (they have their approval kinds) are not.
pub fn default_overridable(r: HoldReason) -> bool {
    matches!(r, HoldReason::CutoffMissed | HoldReason::CarrierUnavailable | HoldReason::PolicyHold)
}

/// One recorded override on an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HoldOverride {
    pub reasons: Vec<HoldReason>,
    /// Why the person overrode the hold.
    pub note: String,
    /// Who: `user:…` or `token:…`.
    pub by: String,
    /// The role the override was made in (the first of the person's roles that grants it).
    pub role: Role,
    pub at: DateTime<Utc>,
}

/// Why an override is refused, decided before anything is written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideError {
    /// Bad input: no reasons, no note, a note too long.
    #[error("the override is invalid")]
    Invalid(Vec<FieldError>),
    /// The caller's roles do not grant `override_holds`.
    #[error("{0}")]
    Forbidden(String),
    /// A named reason is not holding the order, or the rules do not let it be overridden.
    #[error("{0}")]
    NotOverridable(String),
}

/// The role an override is recorded in: the first of `roles` that grants the permission.
pub fn acting_role(roles: &[Role]) -> Option<Role> {
    roles.iter().copied().find(|r| access::role_allows(*r, Permission::OverrideHolds))
}

/// Checks an override against the order's current holds: every named reason must hold the
/// order now (failing, not yet waived or overridden) and be overridable by the rules in force.
pub fn check(
    reasons: &[HoldReason],
    note: &str,
    roles: &[Role],
    holding: &[HoldReason],
    overridable: &dyn Fn(HoldReason) -> bool,
) -> Result<Role, OverrideError> {
    let mut errors = Vec::new();
    if reasons.is_empty() {
        errors.push(FieldError::new("reasons", "name at least one hold reason to override"));
    }
    if note.trim().is_empty() {
        errors.push(FieldError::new("note", "say why the hold is overridden"));
    } else if note.len() > MAX_NOTE {
        errors.push(FieldError::new("note", format!("at most {MAX_NOTE} bytes")));
    }
    if !errors.is_empty() {
        return Err(OverrideError::Invalid(errors));
    }
    let role = acting_role(roles).ok_or_else(|| {
        OverrideError::Forbidden("overriding a hold needs a supervisor, ops manager or admin role".into())
    })?;
    for r in reasons {
        if !holding.contains(r) {
            let now: Vec<&str> = holding.iter().map(|h| h.code()).collect();
            return Err(OverrideError::NotOverridable(format!(
                "`{r}` is not holding this order (it is held for {})",
                if now.is_empty() { "nothing".to_string() } else { now.join(", ") }
            )));
        }
        if !overridable(*r) {
            return Err(OverrideError::NotOverridable(format!(
                "`{r}` is not overridable under the policy in force; fix its cause or request an approval"
            )));
        }
    }
    Ok(role)
}

/// The reasons of `reasons` no override lifts.
pub fn not_overridden(reasons: &[HoldReason], overrides: &[HoldOverride]) -> Vec<HoldReason> {
    reasons.iter().copied().filter(|r| !overrides.iter().any(|o| o.reasons.contains(r))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_holds_are_overridable_by_default_and_hard_blocks_are_not() {
        let soft: Vec<HoldReason> = HoldReason::ALL.iter().copied().filter(|r| default_overridable(*r)).collect();
        assert_eq!(soft, vec![HoldReason::CutoffMissed, HoldReason::CarrierUnavailable, HoldReason::PolicyHold]);
        for hard in
            [HoldReason::AddressInvalid, HoldReason::DocsMissing, HoldReason::StockShort, HoldReason::CreditHold]
        {
            assert!(!default_overridable(hard), "{hard}");
        }
    }

    #[test]
    fn an_override_names_current_overridable_reasons_and_says_why() {
        let holding = [HoldReason::CutoffMissed, HoldReason::DocsMissing];
        let ok = |r: HoldReason| default_overridable(r);
        let sup = [Role::Dispatcher, Role::Supervisor];
        assert_eq!(check(&[HoldReason::CutoffMissed], "customer collects", &sup, &holding, &ok), Ok(Role::Supervisor));
        assert!(matches!(
            check(&[HoldReason::DocsMissing], "x", &sup, &holding, &ok),
            Err(OverrideError::NotOverridable(m)) if m.contains("docs_missing")
        ));
        assert!(matches!(
            check(&[HoldReason::PolicyHold], "x", &sup, &holding, &ok),
            Err(OverrideError::NotOverridable(m)) if m.contains("not holding")
        ));
        match check(&[], " ", &sup, &holding, &ok) {
            Err(OverrideError::Invalid(e)) => {
                assert_eq!(e.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["reasons", "note"])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(&[HoldReason::CutoffMissed], "x", &[Role::Dispatcher, Role::Finance], &holding, &ok),
            Err(OverrideError::Forbidden(_))
        ));
        // The policy decides: a policy that makes docs_missing overridable lets it through.
        assert!(check(&[HoldReason::DocsMissing], "x", &sup, &holding, &|_| true).is_ok());
    }

    #[test]
    fn overridden_reasons_no_longer_hold() {
        let o = HoldOverride {
            reasons: vec![HoldReason::CutoffMissed],
            note: "n".into(),
            by: "user:sam".into(),
            role: Role::Supervisor,
            at: crate::readiness::tests::now(),
        };
        assert_eq!(
            not_overridden(&[HoldReason::CutoffMissed, HoldReason::PolicyHold], &[o]),
            vec![HoldReason::PolicyHold]
        );
    }
}
