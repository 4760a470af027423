//! The active risk model, loaded from the store and cached by version: requests check the
//! version (a small read) and parse the artifact only when it changed (promote, rollback,
//! a better candidate), so every node follows the store's active model.

use std::sync::{Arc, RwLock};

use dispatch_intel::RiskModel;
use dispatch_store::Store;

#[derive(Default)]
pub struct ActiveModel {
    cached: RwLock<Option<Arc<RiskModel>>>,
}

impl ActiveModel {
    /// The active model, `None` when no model is active (or the active one is unreadable,
    /// which is logged).
    pub async fn get(&self, store: &dyn Store) -> Result<Option<Arc<RiskModel>>, dispatch_store::StoreError> {
        let models = store.models().await?;
        let Some(active) = models.iter().find(|m| m.status == "active") else { return Ok(None) };
        if let Some(m) = self.cached.read().ok().and_then(|c| c.clone())
            && m.version == active.version
        {
            return Ok(Some(m));
        }
        let Some((row, bytes)) = store.active_model().await? else { return Ok(None) };
        match RiskModel::from_bytes(&bytes) {
            Ok(m) => {
                let m = Arc::new(m);
                if let Ok(mut c) = self.cached.write() {
                    *c = Some(m.clone());
                }
                Ok(Some(m))
            }
            Err(e) => {
                tracing::error!(version = %row.version, error = %e, "the active risk model cannot be read");
                Ok(None)
            }
        }
    }
}
