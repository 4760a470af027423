//! Who may do what: the permission matrix in one place. Every HTTP route declares one of
//! these permissions; the server's route table and its tests are generated from it.

use serde::Serialize;

use crate::vocab::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See orders, queues, timelines.
    ReadOrders,
    /// Create and update orders (ERP sync, integrators, dispatch staff).
    WriteOrders,
    /// Cancel an order.
    CancelOrders,
    /// See configuration such as warehouses, cut-offs and the dispatch policy.
    ReadConfig,
    /// Replace the dispatch policy (`PUT /api/v1/policy`).
    WritePolicy,
    /// Run a what-if replay of a candidate policy (reads history, changes nothing).
    ReplayPolicy,
    /// Send failed integration jobs (dead letters) for another attempt: a manual touch.
    ReprocessDeadLetters,
    /// Read the audit log (and export it).
    ReadAudit,
    /// Create, disable and change users and their tokens.
    ManageIdentities,
    /// Subscribe, unsubscribe and rotate outbound webhook endpoints (they receive order data).
    ManageWebhooks,
    /// Put an exception of an order up for approval.
    RequestApprovals,
    /// See approval requests and inboxes.
    ReadApprovals,
    /// Record approve/reject decisions (each step also checks the step's own role).
    DecideApprovals,
    /// Lift a hold the policy marks overridable, with a written reason, without an approval.
    OverrideHolds,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::ReadOrders,
        Permission::WriteOrders,
        Permission::CancelOrders,
        Permission::ReadConfig,
        Permission::WritePolicy,
        Permission::ReplayPolicy,
        Permission::ReprocessDeadLetters,
        Permission::ReadAudit,
        Permission::ManageIdentities,
        Permission::ManageWebhooks,
        Permission::RequestApprovals,
        Permission::ReadApprovals,
        Permission::DecideApprovals,
        Permission::OverrideHolds,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Permission::ReadOrders => "read_orders",
            Permission::WriteOrders => "write_orders",
            Permission::CancelOrders => "cancel_orders",
            Permission::ReadConfig => "read_config",
            Permission::WritePolicy => "write_policy",
            Permission::ReplayPolicy => "replay_policy",
            Permission::ReprocessDeadLetters => "reprocess_dead_letters",
            Permission::ReadAudit => "read_audit",
            Permission::ManageIdentities => "manage_identities",
            Permission::ManageWebhooks => "manage_webhooks",
            Permission::RequestApprovals => "request_approvals",
            Permission::ReadApprovals => "read_approvals",
            Permission::DecideApprovals => "decide_approvals",
            Permission::OverrideHolds => "override_holds",
        }
    }
}

/// The matrix: does `role` hold `permission`?
pub fn role_allows(role: Role, permission: Permission) -> bool {
    use Permission::*;
    use Role::*;
    match permission {
        // Everyone who can sign in may look; auditors only ever look.
        ReadOrders | ReadConfig => true,
        WriteOrders | CancelOrders => {
            matches!(role, Dispatcher | WarehouseLead | Supervisor | OpsManager | Admin | Integration)
        }
        // Release criteria are changed by operations management only.
        WritePolicy => matches!(role, OpsManager | Admin),
        // A replay changes nothing; those who shape or audit policy may run one.
        ReplayPolicy => matches!(role, OpsManager | Admin | Supervisor | Auditor),
        ReprocessDeadLetters => matches!(role, Supervisor | OpsManager | Admin),
        // Auditors read the trail; admins may, to answer for it. Nobody else.
        ReadAudit => matches!(role, Auditor | Admin),
        // Who may do what is decided by admins only (and nobody may grant themselves more
        // than an admin has).
        ManageIdentities => matches!(role, Admin),
        // Subscriptions send order data out: operations management, admins, and the
        // integration accounts that set up their own (n8n).
        ManageWebhooks => matches!(role, OpsManager | Admin | Integration),
        // Whoever works an exception may ask; machines too (recommendations, ERP rules).
        RequestApprovals => {
            matches!(role, Dispatcher | WarehouseLead | Supervisor | AccountOwner | OpsManager | Admin | Integration)
        }
        ReadApprovals => true,
        // Approvers only; which step a person may decide is checked against the step's roles.
        DecideApprovals => {
            matches!(role, WarehouseLead | Supervisor | Finance | Compliance | AccountOwner | OpsManager | Admin)
        }
        // Supervisors and operations management answer for a shipment that leaves despite a
        // soft hold; dispatchers ask for an approval instead, finance has its own kinds.
        OverrideHolds => matches!(role, Supervisor | OpsManager | Admin),
    }
}

/// The matrix as a Markdown table (permissions × roles), for `docs/security.md`; a test keeps
/// the document equal to this, so a new permission or role shows up there.
pub fn matrix_markdown() -> String {
    let mut out = String::from("| permission |");
    for r in Role::ALL {
        out.push_str(&format!(" {} |", r.code()));
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str(":-:|");
    }
    out.push('\n');
    for p in Permission::ALL {
        out.push_str(&format!("| `{}` |", p.code()));
        for r in Role::ALL {
            out.push_str(if role_allows(*r, *p) { " ✓ |" } else { "   |" });
        }
        out.push('\n');
    }
    out
}

/// Any of the caller's roles grants it.
pub fn allows(roles: &[Role], permission: Permission) -> bool {
    roles.iter().any(|r| role_allows(*r, permission))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auditors_and_approvers_only_read() {
        for r in [Role::Auditor, Role::Finance, Role::Compliance, Role::AccountOwner] {
            assert!(role_allows(r, Permission::ReadOrders));
            assert!(!role_allows(r, Permission::WriteOrders), "{r}");
            assert!(!role_allows(r, Permission::CancelOrders), "{r}");
        }
        assert!(allows(&[Role::Auditor, Role::Dispatcher], Permission::WriteOrders));
        for r in Role::ALL {
            let may = role_allows(*r, Permission::ReprocessDeadLetters);
            assert_eq!(may, matches!(r, Role::Supervisor | Role::OpsManager | Role::Admin), "{r}");
        }
        assert!(!allows(&[], Permission::ReadOrders));
    }

    #[test]
    fn only_auditors_and_admins_read_the_audit_log_and_only_admins_manage_identities() {
        for r in Role::ALL {
            assert_eq!(role_allows(*r, Permission::ReadAudit), matches!(r, Role::Auditor | Role::Admin), "{r}");
            assert_eq!(role_allows(*r, Permission::ManageIdentities), *r == Role::Admin, "{r}");
        }
        // The auditor reads and never changes anything.
        for p in Permission::ALL {
            if role_allows(Role::Auditor, *p) {
                assert!(p.code().starts_with("read_") || *p == Permission::ReplayPolicy, "auditor may {p:?}");
            }
        }
    }

    #[test]
    fn the_markdown_matrix_has_a_row_per_permission_and_a_column_per_role() {
        let md = matrix_markdown();
        assert_eq!(md.lines().count(), 2 + Permission::ALL.len());
        let audit = md.lines().find(|l| l.starts_with("| `read_audit` |")).unwrap();
        assert_eq!(audit.matches('✓').count(), 2);
        assert!(md.lines().next().unwrap().contains(" auditor |"));
    }

    /// docs/security.md carries the matrix as generated here; `UPDATE_DOCS=1` rewrites it.
    #[test]
    fn docs_security_md_shows_the_current_matrix() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- matrix:begin -->\n", "<!-- matrix:end -->");
        let start = doc.find(begin).expect("matrix:begin marker") + begin.len();
        let stop = doc.find(end).expect("matrix:end marker");
        let want = matrix_markdown();
        if doc[start..stop] != want {
            if std::env::var("UPDATE_DOCS").is_ok() {
                std::fs::write(path, format!("{}{want}{}", &doc[..start], &doc[stop..])).unwrap();
            } else {
                panic!(
                    "docs/security.md's matrix is stale; run UPDATE_DOCS=1 cargo test -p dispatchd-core docs_security"
                );
            }
        }
    }

    #[test]
    fn approvers_decide_machines_and_auditors_do_not() {
        for r in [Role::Finance, Role::Compliance, Role::Supervisor, Role::WarehouseLead, Role::AccountOwner] {
            assert!(role_allows(r, Permission::DecideApprovals), "{r}");
        }
        for r in [Role::Dispatcher, Role::Auditor, Role::Integration] {
            assert!(!role_allows(r, Permission::DecideApprovals), "{r}");
        }
        assert!(role_allows(Role::Auditor, Permission::ReadApprovals));
        assert!(!role_allows(Role::Auditor, Permission::RequestApprovals));
        assert!(!role_allows(Role::Finance, Permission::RequestApprovals));
    }

    #[test]
    fn only_ops_managers_and_admins_change_the_policy() {
        for r in Role::ALL {
            assert_eq!(role_allows(*r, Permission::WritePolicy), matches!(r, Role::OpsManager | Role::Admin), "{r}");
        }
        assert!(role_allows(Role::Auditor, Permission::ReplayPolicy));
        assert!(!role_allows(Role::Dispatcher, Permission::ReplayPolicy));
    }

    #[test]
    fn only_supervisors_ops_managers_and_admins_override_holds() {
        for r in Role::ALL {
            let may = role_allows(*r, Permission::OverrideHolds);
            assert_eq!(may, matches!(r, Role::Supervisor | Role::OpsManager | Role::Admin), "{r}");
        }
    }

    #[test]
    fn webhook_subscriptions_are_managed_by_ops_admins_and_integrations() {
        for r in Role::ALL {
            let may = role_allows(*r, Permission::ManageWebhooks);
            assert_eq!(may, matches!(r, Role::OpsManager | Role::Admin | Role::Integration), "{r}");
        }
    }
}
