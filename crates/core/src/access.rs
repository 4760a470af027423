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
    /// Subscribe, unsubscribe and rotate outbound webhook endpoints (they receive order data).
    ManageWebhooks,
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
        Permission::ManageWebhooks,
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
            Permission::ManageWebhooks => "manage_webhooks",
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
        // Subscriptions send order data out: operations management, admins, and the
        // integration accounts that set up their own (n8n).
        ManageWebhooks => matches!(role, OpsManager | Admin | Integration),
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
    fn only_ops_managers_and_admins_change_the_policy() {
        for r in Role::ALL {
            assert_eq!(role_allows(*r, Permission::WritePolicy), matches!(r, Role::OpsManager | Role::Admin), "{r}");
        }
        assert!(role_allows(Role::Auditor, Permission::ReplayPolicy));
        assert!(!role_allows(Role::Dispatcher, Permission::ReplayPolicy));
    }

    #[test]
    fn webhook_subscriptions_are_managed_by_ops_admins_and_integrations() {
        for r in Role::ALL {
            let may = role_allows(*r, Permission::ManageWebhooks);
            assert_eq!(may, matches!(r, Role::OpsManager | Role::Admin | Role::Integration), "{r}");
        }
    }
}
