//! The pull sync and webhook hints: read pickings from Odoo, map them, upsert (or cancel)
//! orders through the store, and move the cursor only after those writes committed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dispatch_core::{Command, DomainError, Evaluator, OrderState, Warehouses};
use dispatch_store::{OrderQuery, OrderWrite, Store, StoreError, Target, WriteMeta, decision};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::error::OdooError;
use crate::mapping::{self, Bundle, MOVE, Mapped, PARTNER, PICKING, SALE};
use crate::plan::{self, Cursor};
use crate::{OdooConfig, OdooSecrets};

/// The cursor's name in the store.
pub const CURSOR: &str = "odoo";

/// How orders are written: the store, and what a decision needs (as closures, so this crate
/// does not depend on the server's clock and policy types).
#[derive(Clone)]
pub struct Ingest {
    pub store: Arc<dyn Store>,
    pub warehouses: Arc<Warehouses>,
    /// The dispatch policy in force at the time of the write.
    pub rules: Arc<dyn Fn() -> Arc<dyn Evaluator> + Send + Sync>,
    pub now: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Odoo(#[from] OdooError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl SyncError {
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Odoo(e) => e.kind(),
            SyncError::Store(_) => "store",
        }
    }
}

/// What one run (or one hint) did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub cancelled: u64,
    /// Not for dispatchd (validated, not outgoing) or no longer changeable (booked, shipped).
    pub ignored: u64,
    /// Could not become an order: each with the Odoo field and what to fix.
    pub rejected: Vec<String>,
    pub pages: u64,
    /// The cursor after the run.
    pub cursor: Option<String>,
}

impl SyncReport {
    pub fn summary(&self) -> String {
        format!(
            "{} pickings read in {} pages: {} created, {} updated, {} unchanged, {} cancelled, {} ignored, {} rejected",
            self.read,
            self.pages,
            self.created,
            self.updated,
            self.unchanged,
            self.cancelled,
            self.ignored,
            self.rejected.len()
        )
    }
    fn add(&mut self, o: SyncReport) {
        self.read += o.read;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.cancelled += o.cancelled;
        self.ignored += o.ignored;
        self.rejected.extend(o.rejected);
    }
}

/// The answer to a webhook hint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HintOutcome {
    pub model: String,
    pub id: i64,
    /// Pickings the hint led to.
    pub pickings: Vec<i64>,
    #[serde(flatten)]
    pub report: SyncReport,
}

/// Models whose changes can matter to a delivery order (the webhook accepts these).
pub const HINT_MODELS: &[&str] = &[PICKING, SALE, PARTNER, MOVE];

pub struct Connector {
    pub client: Client,
    pub cfg: OdooConfig,
    pub secrets: OdooSecrets,
    pub ingest: Ingest,
    /// One run at a time in this process (the scheduler and `sync --once` never overlap).
    running: tokio::sync::Mutex<()>,
}

fn m2o(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::Array(a) => a.first().and_then(Value::as_i64),
        _ => None,
    }
}

impl Connector {
    pub fn new(cfg: OdooConfig, secrets: OdooSecrets, ingest: Ingest) -> Result<Connector, OdooError> {
        let client = Client::new(cfg.connection(&secrets))?;
        Ok(Connector { client, cfg, secrets, ingest, running: tokio::sync::Mutex::new(()) })
    }

    /// Reads the related records of these pickings in bulk (one `read` per model).
    pub async fn bundles(&self, pickings: Vec<Map<String, Value>>) -> Result<Vec<Bundle>, OdooError> {
        let f = self.cfg.mapping.field_sets();
        let sale_ids: BTreeSet<i64> = pickings.iter().filter_map(|p| m2o(p.get("sale_id"))).collect();
        let sales = self.client.read(SALE, &sale_ids.into_iter().collect::<Vec<_>>(), &f.sale).await?;
        let sales: HashMap<i64, Map<String, Value>> =
            sales.into_iter().filter_map(|s| Some((s.get("id")?.as_i64()?, s))).collect();
        let mut partner_ids: BTreeSet<i64> = pickings.iter().filter_map(|p| m2o(p.get("partner_id"))).collect();
        partner_ids.extend(sales.values().filter_map(|s| m2o(s.get("partner_id"))));
        let mut partner_fields: BTreeSet<String> = f.ship_to.iter().cloned().collect();
        partner_fields.extend(f.customer.iter().cloned());
        let partner_fields: Vec<String> = partner_fields.into_iter().collect();
        let partners = self.client.read(PARTNER, &partner_ids.into_iter().collect::<Vec<_>>(), &partner_fields).await?;
        let partners: HashMap<i64, Map<String, Value>> =
            partners.into_iter().filter_map(|p| Some((p.get("id")?.as_i64()?, p))).collect();
        let move_ids: Vec<i64> = pickings
            .iter()
            .flat_map(|p| p.get("move_ids").and_then(Value::as_array).cloned().unwrap_or_default())
            .filter_map(|v| v.as_i64())
            .collect();
        let moves = self.client.read(MOVE, &move_ids, &f.moves).await?;
        let mut by_picking: HashMap<i64, Vec<Map<String, Value>>> = HashMap::new();
        for mv in moves {
            if let Some(p) = m2o(mv.get("picking_id")) {
                by_picking.entry(p).or_default().push(mv);
            }
        }
        Ok(pickings
            .into_iter()
            .map(|p| {
                let sale = m2o(p.get("sale_id")).and_then(|id| sales.get(&id).cloned());
                let customer =
                    sale.as_ref().and_then(|s| m2o(s.get("partner_id"))).and_then(|id| partners.get(&id).cloned());
                let ship_to = m2o(p.get("partner_id")).and_then(|id| partners.get(&id).cloned());
                let id = p.get("id").and_then(Value::as_i64).unwrap_or(0);
                let mut moves = by_picking.remove(&id).unwrap_or_default();
                moves.sort_by_key(|m| m.get("id").and_then(Value::as_i64).unwrap_or(0));
                Bundle { picking: p, sale, ship_to, customer, moves }
            })
            .collect())
    }

    async fn write(
        &self,
        target: Target,
        cmd: Command,
        actor: &str,
    ) -> Result<dispatch_store::WriteOutcome, StoreError> {
        let now = (self.ingest.now)();
        self.ingest
            .store
            .execute(OrderWrite {
                target,
                meta: WriteMeta { actor: actor.to_string(), request_id: None, at: now },
                idempotency: None,
                decide: decision(cmd, now, self.ingest.warehouses.clone(), (self.ingest.rules)()),
            })
            .await
    }

    /// Maps and writes these pickings. Only a store failure is an error (then nothing after
    /// it may be acknowledged); a picking that cannot become an order is reported and skipped.
    pub async fn apply(&self, bundles: Vec<Bundle>, actor: &str) -> Result<SyncReport, StoreError> {
        let mut report = SyncReport { read: bundles.len() as u64, ..Default::default() };
        let mut writes = Vec::new();
        for b in &bundles {
            let name = b.picking_name();
            match mapping::map_picking(b, &self.cfg.mapping) {
                Err(e) => {
                    tracing::warn!(target: "dispatchd::odoo", picking = %name, "picking rejected: {e}");
                    metrics::counter!("dispatchd_odoo_records_total", "outcome" => "rejected").increment(1);
                    report.rejected.push(e.to_string());
                }
                Ok(Mapped::Ignore { .. }) => report.ignored += 1,
                Ok(Mapped::Upsert(facts)) => {
                    let errors = dispatch_core::validate(&facts, &self.ingest.warehouses);
                    if !errors.is_empty() {
                        let detail: Vec<String> =
                            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
                        let msg = format!("stock.picking {name}: the mapped order is invalid: {}", detail.join("; "));
                        tracing::warn!(target: "dispatchd::odoo", picking = %name, "{msg}");
                        metrics::counter!("dispatchd_odoo_records_total", "outcome" => "rejected").increment(1);
                        report.rejected.push(msg);
                        continue;
                    }
                    let target =
                        Target::NaturalKey { source: facts.source.clone(), external_id: facts.external_id.clone() };
                    writes.push((
                        name,
                        true,
                        self.write(target, Command::Upsert { facts, expected_version: None }, actor),
                    ));
                }
                Ok(Mapped::Cancel { external_id, reason }) => {
                    let target = Target::NaturalKey { source: mapping::SOURCE.into(), external_id };
                    writes.push((
                        name,
                        false,
                        self.write(target, Command::Cancel { reason: Some(reason), expected_version: None }, actor),
                    ));
                }
            }
        }
        // All writes of a page go to the store together, so its writer commits them in few
        // transactions.
        let (names, futs): (Vec<(String, bool)>, Vec<_>) = writes.into_iter().map(|(n, up, f)| ((n, up), f)).unzip();
        let results = futures::future::join_all(futs).await;
        let mut first_failure = None;
        for ((name, upsert), r) in names.into_iter().zip(results) {
            let outcome = match r {
                Ok(o) if o.created => {
                    report.created += 1;
                    "created"
                }
                Ok(o) if o.appended == 0 => {
                    report.unchanged += 1;
                    "unchanged"
                }
                Ok(_) if upsert => {
                    report.updated += 1;
                    "updated"
                }
                Ok(_) => {
                    report.cancelled += 1;
                    "cancelled"
                }
                Err(StoreError::Domain(DomainError::NotFound)) => {
                    report.ignored += 1; // cancelled in Odoo before dispatchd ever saw it
                    "ignored"
                }
                Err(StoreError::Domain(DomainError::IllegalTransition { from, action })) => {
                    tracing::info!(target: "dispatchd::odoo", picking = %name, state = %from, "Odoo changed a picking dispatchd can no longer {action}; kept as is");
                    report.ignored += 1;
                    "ignored"
                }
                Err(StoreError::Domain(e)) => {
                    report.rejected.push(format!("stock.picking {name}: {e}"));
                    "rejected"
                }
                Err(e) => {
                    first_failure.get_or_insert(e);
                    "failed"
                }
            };
            metrics::counter!("dispatchd_odoo_records_total", "outcome" => outcome).increment(1);
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// One sync run: pages of pickings changed since the cursor (minus the overlap), each
    /// page applied and committed before the cursor moves past it. An Odoo failure ends the
    /// run with the pages before it kept; the next run continues from there.
    pub async fn sync_once(&self, on_page: &(dyn Fn(u64) + Send + Sync)) -> Result<SyncReport, SyncError> {
        let _one = self.running.lock().await;
        let started = std::time::Instant::now();
        let result = self.run_pages(on_page).await;
        metrics::histogram!("dispatchd_odoo_sync_seconds").record(started.elapsed().as_secs_f64());
        match &result {
            Ok(r) => {
                metrics::gauge!("dispatchd_odoo_up").set(1.0);
                metrics::gauge!("dispatchd_odoo_sync_last_success_seconds").set((self.ingest.now)().timestamp() as f64);
                metrics::counter!("dispatchd_odoo_sync_runs_total", "outcome" => "ok").increment(1);
                tracing::info!(target: "dispatchd::odoo", "{}", r.summary());
            }
            Err(e) => {
                if matches!(e, SyncError::Odoo(OdooError::Unavailable { .. })) {
                    metrics::gauge!("dispatchd_odoo_up").set(0.0);
                }
                metrics::counter!("dispatchd_odoo_sync_runs_total", "outcome" => e.kind()).increment(1);
            }
        }
        result
    }

    async fn run_pages(&self, on_page: &(dyn Fn(u64) + Send + Sync)) -> Result<SyncReport, SyncError> {
        let store = &self.ingest.store;
        let mut cursor = store.sync_cursor(CURSOR).await?.as_deref().and_then(Cursor::parse);
        let start = plan::start_of(cursor.as_ref(), chrono::Duration::seconds(self.cfg.sync.overlap_secs));
        let fields = self.cfg.mapping.field_sets().picking;
        let mut after: Option<Cursor> = None;
        let mut report = SyncReport::default();
        loop {
            let domain = plan::page_domain(start.as_deref(), after.as_ref());
            let page = self
                .client
                .search_read(PICKING, domain, &fields, Some(plan::PAGE_ORDER), Some(self.cfg.sync.batch))
                .await?;
            let Some(last) = page.last().map(|r| {
                Cursor::of(r).ok_or_else(|| OdooError::Protocol {
                    what: "stock.picking.search_read".into(),
                    detail: format!("a record without a usable write_date/id: {}", Value::Object(r.clone())),
                })
            }) else {
                break;
            };
            let last = last?;
            let full = page.len() as u32 >= self.cfg.sync.batch;
            let bundles = self.bundles(page).await?;
            report.add(self.apply(bundles, "odoo:sync").await?);
            let next = plan::advance(cursor.as_ref(), &last);
            store.set_sync_cursor(CURSOR, &next.to_string(), (self.ingest.now)()).await?;
            if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&next.write_date, plan::ODOO_DATETIME) {
                metrics::gauge!("dispatchd_odoo_sync_cursor_seconds").set(t.and_utc().timestamp() as f64);
            }
            cursor = Some(next);
            after = Some(last);
            report.pages += 1;
            on_page(report.read);
            if !full {
                break;
            }
        }
        if self.cfg.sync.reconcile_deleted {
            report.cancelled += self.reconcile_deleted().await?;
        }
        report.cursor = cursor.map(|c| c.to_string());
        Ok(report)
    }

    /// Cancels open Odoo orders whose picking was deleted in Odoo (a deleted record has no
    /// `write_date` to find it by).
    pub async fn reconcile_deleted(&self) -> Result<u64, SyncError> {
        let store = &self.ingest.store;
        let mut names = Vec::new();
        let mut q = OrderQuery {
            states: vec![OrderState::Received, OrderState::OnHold, OrderState::AwaitingApproval, OrderState::Released],
            limit: 500,
            ..Default::default()
        };
        loop {
            let page = store.list_orders(&q).await?;
            names.extend(
                page.items.iter().filter(|o| o.facts.source == mapping::SOURCE).map(|o| o.facts.external_id.clone()),
            );
            match page.next_after {
                Some(a) => q.after_id = Some(a),
                None => break,
            }
        }
        let mut cancelled = 0;
        for chunk in names.chunks(200) {
            let found = self
                .client
                .search_read(PICKING, json!([["name", "in", chunk]]), &["name".to_string()], None, None)
                .await?;
            let present: BTreeSet<&str> = found.iter().filter_map(|r| r.get("name").and_then(Value::as_str)).collect();
            for name in chunk.iter().filter(|n| !present.contains(n.as_str())) {
                let target = Target::NaturalKey { source: mapping::SOURCE.into(), external_id: name.clone() };
                let cmd = Command::Cancel { reason: Some("deleted in Odoo".into()), expected_version: None };
                match self.write(target, cmd, "odoo:sync").await {
                    Ok(o) if o.appended > 0 => {
                        cancelled += 1;
                        tracing::info!(target: "dispatchd::odoo", picking = %name, "picking deleted in Odoo: order cancelled");
                    }
                    Ok(_) | Err(StoreError::Domain(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(cancelled)
    }

    /// A webhook hint: `model`/`id` changed in Odoo. The record is fetched from Odoo (the
    /// hint's own fields are not trusted) and the pickings it concerns are applied. A picking
    /// that no longer exists cancels its order when the hint named it (`name`).
    pub async fn hint(&self, model: &str, id: i64, name_hint: Option<&str>) -> Result<HintOutcome, SyncError> {
        let outgoing = json!(["picking_type_code", "=", "outgoing"]);
        let open = json!(["state", "not in", ["done", "cancel"]]);
        let ids: Vec<i64> = match model {
            PICKING => vec![id],
            SALE => self.client.search(PICKING, json!([["sale_id", "=", id], outgoing])).await?,
            PARTNER => {
                let sales = self.client.search(SALE, json!([["partner_id", "=", id]])).await?;
                let mut ids = self
                    .client
                    .search(PICKING, json!([outgoing, open, "|", ["partner_id", "=", id], ["sale_id", "in", sales]]))
                    .await?;
                ids.sort_unstable();
                ids
            }
            MOVE => {
                let moves = self.client.read(MOVE, &[id], &["picking_id".to_string()]).await?;
                moves.iter().filter_map(|m| m2o(m.get("picking_id"))).collect()
            }
            other => {
                return Err(OdooError::Protocol {
                    what: "webhook".into(),
                    detail: format!("model {other} is not synced"),
                }
                .into());
            }
        };
        let fields = self.cfg.mapping.field_sets().picking;
        let pickings = if ids.is_empty() {
            vec![]
        } else {
            self.client.search_read(PICKING, json!([["id", "in", ids]]), &fields, Some(plan::PAGE_ORDER), None).await?
        };
        let mut report = SyncReport::default();
        if model == PICKING && pickings.is_empty() {
            // Deleted in Odoo (or never existed): only a name we can check against our own
            // orders can cancel anything, and only because Odoo confirmed the record is gone.
            if let Some(name) = name_hint {
                let gone = self.client.search_count(PICKING, json!([["name", "=", name]])).await? == 0;
                if gone {
                    let target = Target::NaturalKey { source: mapping::SOURCE.into(), external_id: name.to_string() };
                    let cmd = Command::Cancel { reason: Some("deleted in Odoo".into()), expected_version: None };
                    match self.write(target, cmd, "odoo:webhook").await {
                        Ok(o) if o.appended > 0 => report.cancelled += 1,
                        Ok(_) | Err(StoreError::Domain(_)) => report.ignored += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let picking_ids: Vec<i64> = pickings.iter().filter_map(|p| p.get("id").and_then(Value::as_i64)).collect();
        let bundles = self.bundles(pickings).await?;
        report.add(self.apply(bundles, "odoo:webhook").await?);
        Ok(HintOutcome { model: model.to_string(), id, pickings: picking_ids, report })
    }

    /// What `dispatchd odoo check` prints: version, user, access per model.
    pub async fn check(&self) -> Result<CheckReport, OdooError> {
        let version = self.client.version().await?;
        let uid = self.client.uid().await?;
        let users =
            self.client.read("res.users", &[uid], &["name".to_string(), "login".to_string()]).await.unwrap_or_default();
        let user = users.first().map(|u| {
            format!(
                "{} ({}, id {uid})",
                u.get("name").and_then(Value::as_str).unwrap_or("?"),
                u.get("login").and_then(Value::as_str).unwrap_or("?")
            )
        });
        let mut access = Vec::new();
        for (model, ops) in crate::needed_access() {
            for op in ops {
                let ok = self.client.check_access_rights(model, op).await;
                access.push(AccessLine {
                    model: model.to_string(),
                    operation: op.to_string(),
                    result: ok.map_err(|e| e.to_string()),
                });
            }
        }
        // The write-back fields must exist on stock.picking (custom fields are added by hand).
        let fields = self.client.call(PICKING, "fields_get", None, Map::new()).await?;
        let mut missing_fields = Vec::new();
        for f in self.cfg.writeback.fields() {
            if fields.get(&f).is_none() {
                missing_fields.push(f);
            }
        }
        Ok(CheckReport { version, uid, user, access, missing_fields })
    }
}

#[derive(Debug)]
pub struct AccessLine {
    pub model: String,
    pub operation: String,
    pub result: Result<bool, String>,
}

#[derive(Debug)]
pub struct CheckReport {
    pub version: crate::ServerVersion,
    pub uid: i64,
    pub user: Option<String>,
    pub access: Vec<AccessLine>,
    /// Write-back fields that do not exist on `stock.picking`.
    pub missing_fields: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.missing_fields.is_empty() && self.access.iter().all(|a| matches!(a.result, Ok(true)))
    }
}
