//! dispatchd's functional core: the delivery-order domain with no I/O, no async and no clock
//! of its own. Everything here is a pure function of its arguments, so the shell (store,
//! server, workers) can replay, test and explain every decision.
//!
//! The path of one order through this crate: [`OrderFacts`] arrive → [`validate`] →
//! [`decide`] (with a [`Ctx`] carrying the injected clock and the warehouses) runs the
//! [`readiness`] checks and [`priority`] scoring and returns [`EventData`] → [`apply`] folds
//! the events into the [`Order`] projection.

pub mod access;
pub mod address;
pub mod approval;
pub mod audit;
pub mod effects;
pub mod event;
pub mod kpi;
pub mod machine;
pub mod monitor;
pub mod notify;
pub mod order;
pub mod outbound;
pub mod overrides;
pub mod priority;
pub mod readiness;
pub mod risk;
pub mod route;
pub mod schedule;
pub mod tracking;
pub mod validate;
pub mod vocab;
pub mod warehouse;

pub use event::{Event, EventData};
pub use machine::{BuiltinRules, Command, Ctx, DomainError, Evaluator, apply, decide, replay};
pub use order::{Address, Customer, Line, Order, OrderFacts, Payment};
pub use readiness::{CarrierChoice, CheckResult, Evaluation, RuleHit};
pub use tracking::{StatusMap, TrackingState, TrackingUpdate};
pub use validate::{FieldError, validate};
pub use vocab::*;
pub use warehouse::{Warehouse, WarehouseError, Warehouses};
