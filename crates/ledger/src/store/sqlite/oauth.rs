//! OAuth clients and the grants users gave them.

use super::*;
use crate::oauth::{NewGrant, NewOAuthClient, OAuthClient, OAuthGrant, OAuthStore, Registration};

const CLIENT_COLUMNS: &str =
    "id, name, redirect_uris, secret_hash, scopes, registration, created_at, revoked_at";
const GRANT_COLUMNS: &str =
    "id, user_id, client_id, client_name, scopes, daily_cap, created_at, last_used_at";

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn client(row: &SqliteRow) -> Result<(OAuthClient, Option<String>), StoreError> {
    let redirect_uris: String = row.try_get("redirect_uris")?;
    let secret_hash: Option<String> = row.try_get("secret_hash")?;
    let scopes: String = row.try_get("scopes")?;
    let registration: String = row.try_get("registration")?;
    Ok((
        OAuthClient {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            redirect_uris: redirect_uris.lines().map(str::to_owned).collect(),
            confidential: secret_hash.is_some(),
            scopes: words(&scopes),
            registration: Registration::parse(&registration)?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        },
        secret_hash,
    ))
}

fn grant(row: &SqliteRow) -> Result<OAuthGrant, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(OAuthGrant {
        id: row.try_get("id")?,
        user_id: uuid(row, "user_id")?,
        client_id: row.try_get("client_id")?,
        client_name: row.try_get("client_name")?,
        scopes: words(&scopes),
        daily_cap: row.try_get("daily_cap")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

#[async_trait]
impl OAuthStore for SqliteStore {
    async fn insert_oauth_client(&self, new: &NewOAuthClient) -> Result<(), StoreError> {
        let c = &new.record;
        let values = (
            c.id.clone(),
            c.name.clone(),
            c.redirect_uris.join("\n"),
            new.secret_hash(),
            c.scopes.join(" "),
            c.registration.as_str(),
            timestamp(c.created_at),
        );
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO oauth_clients (id, name, redirect_uris, secret_hash, scopes, registration, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![values.0, values.1, values.2, values.3, values.4, values.5, values.6])?;
                Ok(())
            })
            .await
    }

    async fn find_oauth_client(
        &self,
        id: &str,
    ) -> Result<Option<(OAuthClient, Option<String>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = ?1 AND revoked_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(client).transpose()
    }

    async fn list_oauth_clients(&self) -> Result<Vec<OAuthClient>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at DESC, id"
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| client(r).map(|(c, _)| c)).collect()
    }

    async fn revoke_oauth_client(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let at = timestamp(now());
        self.writer
            .write(move |conn| {
                let revoked = conn
                    .prepare_cached(
                        "UPDATE oauth_clients SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    )?
                    .execute(params![id, at])?
                    == 1;
                conn.prepare_cached(
                    "UPDATE oauth_grants SET revoked_at = ?2 WHERE client_id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![id, at])?;
                Ok(revoked)
            })
            .await
    }

    async fn upsert_grant(&self, new: &NewGrant) -> Result<OAuthGrant, StoreError> {
        let id = crate::oauth::new_grant_id().map_err(|e| StoreError::Corrupt(e.message))?;
        let values = (
            id,
            new.user_id.to_string(),
            new.client_id.clone(),
            new.client_name.clone(),
            new.scopes.join(" "),
            new.daily_cap,
            timestamp(now()),
        );
        let id = self
            .writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO oauth_grants (id, user_id, client_id, client_name, scopes, daily_cap, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (user_id, client_id) WHERE revoked_at IS NULL
                         DO UPDATE SET client_name = excluded.client_name, scopes = excluded.scopes,
                                       daily_cap = excluded.daily_cap
                         RETURNING id",
                    )?
                    .query_row(
                        params![values.0, values.1, values.2, values.3, values.4, values.5, values.6],
                        |row| row.get::<_, String>(0),
                    )?)
            })
            .await?;
        self.find_grant(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("grant {id} vanished")))
    }

    async fn find_grant(&self, id: &str) -> Result<Option<OAuthGrant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE id = ?1 AND revoked_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(grant).transpose()
    }

    async fn live_grant(
        &self,
        user_id: Uuid,
        client_id: &str,
    ) -> Result<Option<OAuthGrant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants
             WHERE user_id = ?1 AND client_id = ?2 AND revoked_at IS NULL"
        ))
        .bind(user_id.to_string())
        .bind(client_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(grant).transpose()
    }

    async fn list_grants(&self, user_id: Uuid) -> Result<Vec<OAuthGrant>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants
             WHERE user_id = ?1 AND revoked_at IS NULL ORDER BY created_at DESC, id"
        ))
        .bind(user_id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(grant).collect()
    }

    async fn revoke_grant(&self, user_id: Uuid, id: &str) -> Result<bool, StoreError> {
        let (id, user, at) = (id.to_owned(), user_id.to_string(), timestamp(now()));
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE oauth_grants SET revoked_at = ?3
                         WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
                    )?
                    .execute(params![id, user, at])?
                    == 1)
            })
            .await
    }

    async fn touch_grant(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let (id, at) = (id.to_owned(), timestamp(at));
        self.writer
            .write(move |conn| {
                conn.prepare_cached("UPDATE oauth_grants SET last_used_at = ?2 WHERE id = ?1")?
                    .execute(params![id, at])?;
                Ok(())
            })
            .await
    }
}
