//! PostgreSQL side of [`SecurityStore`]. Every append locks the single row of `audit_head`
//! (`FOR UPDATE`) until its transaction ends, so the chain has one order across nodes; writers
//! take that lock last, just before commit, to hold it briefly.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dispatch_core::audit::{AuditDraft, AuditEntry, chain};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Row};

use super::{PgStore, token_from_row};
use crate::security::{AuditQuery, SealedSecret, SecurityStore, SessionRecord, UserRecord, subject_pattern};
use crate::time::{from_micros, to_micros};
use crate::{StoreError, TokenRecord};

/// Appends drafts after the current head, inside the caller's transaction.
pub(crate) async fn append_chain(
    conn: &mut PgConnection,
    drafts: Vec<AuditDraft>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let head: (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetch_one(&mut *conn).await?;
    let (entries, (seq, hash)) = chain(head, drafts);
    let mut c = (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for e in &entries {
        c.0.push(e.seq);
        c.1.push(to_micros(e.draft.at));
        c.2.push(e.draft.actor.as_str());
        c.3.push(serde_json::to_string(&e.draft.roles)?);
        c.4.push(e.draft.request_id.as_deref());
        c.5.push(e.draft.action.as_str());
        c.6.push(e.draft.subject.as_str());
        c.7.push(e.draft.before.as_deref());
        c.8.push(e.draft.after.as_deref());
        c.9.push(e.prev_hash.as_str());
        c.10.push(e.hash.as_str());
    }
    // The entries and the new head in one round trip: the head stays locked until commit.
    sqlx::query(
        "WITH appended AS (INSERT INTO audit_log \
         (seq, at, actor, roles, request_id, action, subject, before, after, prev_hash, hash) \
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[], $11::text[])) \
         UPDATE audit_head SET seq = $12, hash = $13 WHERE id = 1",
    )
    .bind(c.0)
    .bind(c.1)
    .bind(c.2)
    .bind(c.3)
    .bind(c.4)
    .bind(c.5)
    .bind(c.6)
    .bind(c.7)
    .bind(c.8)
    .bind(c.9)
    .bind(c.10)
    .bind(seq)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(entries)
}

fn entry_from_row(r: &sqlx::postgres::PgRow) -> Result<AuditEntry, StoreError> {
    let roles: String = r.try_get("roles")?;
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        draft: AuditDraft {
            at: from_micros(r.try_get("at")?),
            actor: r.try_get("actor")?,
            roles: serde_json::from_str(&roles)?,
            request_id: r.try_get("request_id")?,
            action: r.try_get("action")?,
            subject: r.try_get("subject")?,
            before: r.try_get("before")?,
            after: r.try_get("after")?,
        },
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

fn user_from_row(r: &sqlx::postgres::PgRow) -> Result<UserRecord, StoreError> {
    let roles: String = r.try_get("roles")?;
    Ok(UserRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        roles: serde_json::from_str(&roles)?,
        password_hash: r.try_get("password_hash")?,
        created_at: from_micros(r.try_get("created_at")?),
        disabled_at: r.try_get::<Option<i64>, _>("disabled_at")?.map(from_micros),
    })
}

fn session_from_row(r: &sqlx::postgres::PgRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: r.try_get("id_hash")?,
        user_id: r.try_get("user_id")?,
        csrf: r.try_get("csrf")?,
        created_at: from_micros(r.try_get("created_at")?),
        expires_at: from_micros(r.try_get("expires_at")?),
    })
}

fn secret_from_row(r: &sqlx::postgres::PgRow) -> Result<SealedSecret, StoreError> {
    Ok(SealedSecret {
        name: r.try_get("name")?,
        sealed: r.try_get("sealed")?,
        key_version: u32::try_from(r.try_get::<i64, _>("key_version")?)
            .map_err(|_| StoreError::Corrupt("secret key version out of range".into()))?,
        updated_at: from_micros(r.try_get("updated_at")?),
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

impl PgStore {
    /// Runs `change` and appends `audit` in one `BEGIN IMMEDIATE` transaction.
    async fn audited<T, F>(&self, audit: Vec<AuditDraft>, change: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection) -> futures::future::BoxFuture<'c, Result<T, StoreError>> + Send,
    {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let out = change(&mut tx).await?;
        append_chain(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(out)
    }
}

#[async_trait]
impl SecurityStore for PgStore {
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditEntry>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let entries = append_chain(&mut tx, drafts).await?;
        tx.commit().await?;
        Ok(entries)
    }

    async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut b: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM audit_log WHERE seq > ");
        b.push_bind(q.after_seq.unwrap_or(0));
        if let Some(a) = &q.actor {
            b.push(" AND actor = ").push_bind(a.clone());
        }
        if let Some(a) = &q.action {
            b.push(" AND action = ").push_bind(a.clone());
        }
        if let Some(s) = &q.subject {
            let (pattern, prefix) = subject_pattern(s);
            if prefix {
                b.push(" AND subject LIKE ").push_bind(pattern).push(" ESCAPE '\\'");
            } else {
                b.push(" AND subject = ").push_bind(pattern);
            }
        }
        if let Some(r) = &q.request_id {
            b.push(" AND request_id = ").push_bind(r.clone());
        }
        if let Some(t) = q.since {
            b.push(" AND at >= ").push_bind(to_micros(t));
        }
        if let Some(t) = q.until {
            b.push(" AND at < ").push_bind(to_micros(t));
        }
        b.push(" ORDER BY seq LIMIT ").push_bind(i64::from(q.limit.max(1)));
        let rows = b.build().fetch_all(&self.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        Ok(sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?)
    }

    async fn audit_seq_of(&self, hash: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT seq FROM audit_log WHERE hash = $1 LIMIT 1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn event_data(&self, order_id: &str, version: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT data FROM events WHERE order_id = $1 AND version = $2")
            .bind(order_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn create_user(&self, u: &UserRecord, audit: AuditDraft) -> Result<(), StoreError> {
        let u = u.clone();
        let roles = serde_json::to_string(&u.roles)?;
        self.audited(vec![audit], move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO users (id, name, roles, password_hash, created_at, disabled_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&u.id)
                .bind(&u.name)
                .bind(roles)
                .bind(&u.password_hash)
                .bind(to_micros(u.created_at))
                .bind(u.disabled_at.map(to_micros))
                .execute(&mut *c)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict(format!("a user named `{}` exists already", u.name))
                    } else {
                        e.into()
                    }
                })?;
                Ok(())
            })
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, u: &UserRecord, audit: AuditDraft) -> Result<(), StoreError> {
        let u = u.clone();
        let roles = serde_json::to_string(&u.roles)?;
        self.audited(vec![audit], move |c| {
            Box::pin(async move {
                let done =
                    sqlx::query("UPDATE users SET roles = $2, password_hash = $3, disabled_at = $4 WHERE id = $1")
                        .bind(&u.id)
                        .bind(roles)
                        .bind(&u.password_hash)
                        .bind(u.disabled_at.map(to_micros))
                        .execute(&mut *c)
                        .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!("there is no user `{}`", u.name)));
                }
                Ok(())
            })
        })
        .await
    }

    async fn create_token(&self, t: &TokenRecord, audit: AuditDraft) -> Result<(), StoreError> {
        let t = t.clone();
        let roles = serde_json::to_string(&t.roles)?;
        self.audited(vec![audit], move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO api_tokens (id, name, prefix, secret_hash, roles, created_at, expires_at, \
                     revoked_at, last_used_at, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&t.id)
                .bind(&t.name)
                .bind(&t.prefix)
                .bind(&t.secret_hash)
                .bind(roles)
                .bind(to_micros(t.created_at))
                .bind(t.expires_at.map(to_micros))
                .bind(t.revoked_at.map(to_micros))
                .bind(t.last_used_at.map(to_micros))
                .bind(&t.user_id)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>, audit: AuditDraft) -> Result<bool, StoreError> {
        let id = id.to_string();
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(&id)
            .bind(to_micros(at))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        append_chain(&mut tx, vec![audit]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, s: &SessionRecord, audit: AuditDraft) -> Result<(), StoreError> {
        let s = s.clone();
        self.audited(vec![audit], move |c| {
            Box::pin(async move {
                // Expired sessions go when new ones come, so the table stays small.
                sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
                    .bind(to_micros(s.created_at))
                    .execute(&mut *c)
                    .await?;
                sqlx::query(
                    "INSERT INTO console_sessions (id_hash, user_id, csrf, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&s.id_hash)
                .bind(&s.user_id)
                .bind(&s.csrf)
                .bind(to_micros(s.created_at))
                .bind(to_micros(s.expires_at))
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn delete_session(&self, id_hash: &str, audit: AuditDraft) -> Result<(), StoreError> {
        let id_hash = id_hash.to_string();
        self.audited(vec![audit], move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1").bind(&id_hash).execute(&mut *c).await?;
                Ok(())
            })
        })
        .await
    }

    async fn put_secret(&self, s: &SealedSecret, audit: AuditDraft) -> Result<(), StoreError> {
        let s = s.clone();
        self.audited(vec![audit], move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO secrets (name, sealed, key_version, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, \
                     key_version = excluded.key_version, updated_at = excluded.updated_at",
                )
                .bind(&s.name)
                .bind(&s.sealed)
                .bind(i64::from(s.key_version))
                .bind(to_micros(s.updated_at))
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn secret(&self, name: &str) -> Result<Option<SealedSecret>, StoreError> {
        let row = sqlx::query("SELECT * FROM secrets WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(secret_from_row).transpose()
    }

    async fn secrets(&self) -> Result<Vec<SealedSecret>, StoreError> {
        let rows = sqlx::query("SELECT * FROM secrets ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(secret_from_row).collect()
    }
}
