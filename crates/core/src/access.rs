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
    /// Put an exception of an order up for approval.
    RequestApprovals,
    /// See approval requests and inboxes.
    ReadApprovals,
    /// Record approve/reject decisions (each step also checks the step's own role).
    DecideApprovals,
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
        Permission::RequestApprovals,
        Permission::ReadApprovals,
        Permission::DecideApprovals,
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
            Permission::RequestApprovals => "request_approvals",
            Permission::ReadApprovals => "read_approvals",
            Permission::DecideApprovals => "decide_approvals",
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
        // Whoever works an exception may ask; machines too (recommendations, ERP rules).
        RequestApprovals => {
            matches!(role, Dispatcher | WarehouseLead | Supervisor | AccountOwner | OpsManager | Admin | Integration)
        }
        ReadApprovals => true,
        // Approvers only; which step a person may decide is checked against the step's roles.
        DecideApprovals => {
            matches!(role, WarehouseLead | Supervisor | Finance | Compliance | AccountOwner | OpsManager | Admin)
        }
    }
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
}
