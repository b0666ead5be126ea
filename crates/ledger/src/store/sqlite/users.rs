//! Users, their sign-in methods and roles.

use super::*;

pub(super) fn create_user(
    conn: &Connection,
    new: &NewUser,
) -> Result<Option<CreatedUser>, StoreError> {
    let user = User {
        id: Uuid::now_v7(),
        email: new.email.clone(),
        name: new.name.clone(),
        created_at: now(),
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO users
                 (id, email, name, created_at, google_subject, password_hash, email_verified_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            user.id.to_string(),
            user.email,
            user.name,
            timestamp(user.created_at),
            new.google_subject,
            new.password_hash,
            new.email_verified.then(|| timestamp(user.created_at)),
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    conn.prepare_cached("INSERT INTO credit_accounts (user_id, updated_at) VALUES (?1, ?2)")?
        .execute(params![user.id.to_string(), timestamp(user.created_at)])?;
    conn.prepare_cached("INSERT INTO user_roles (user_id, role) VALUES (?1, ?2)")?
        .execute(params![user.id.to_string(), new.role.as_str()])?;
    let initial = if new.initial_credits > 0 {
        let initial = Grant {
            user_id: user.id,
            amount: new.initial_credits,
            reason: "initial credits".to_owned(),
            request_id: None,
            terms: crate::grants::GrantTerms::default(),
        };
        match grant(conn, &initial, None)? {
            GrantOutcome::Granted { transaction } => Some(transaction),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "grant to a new account: {other:?}"
                )));
            }
        }
    } else {
        None
    };
    Ok(Some(CreatedUser {
        user,
        balance: new.initial_credits,
        grant: initial,
    }))
}

pub(super) fn verify_email(
    conn: &Connection,
    id: Uuid,
    credits: i64,
) -> Result<EmailVerification, StoreError> {
    // The conditional update decides: of concurrent calls, only one finds the address unverified.
    let verified = conn
        .prepare_cached(
            "UPDATE users SET email_verified_at = ?2 WHERE id = ?1 AND email_verified_at IS NULL",
        )?
        .execute(params![id.to_string(), timestamp(now())])?;
    if verified == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
            .query_row(params![id.to_string()], |_| Ok(()))
            .optional()?
            .is_some();
        return Ok(if exists {
            EmailVerification::AlreadyVerified
        } else {
            EmailVerification::UnknownUser
        });
    }
    if credits <= 0 {
        return Ok(EmailVerification::Verified { grant: None });
    }
    let welcome = Grant {
        user_id: id,
        amount: credits,
        reason: "new-user credits: email verified".to_owned(),
        request_id: None,
        terms: crate::grants::GrantTerms::default(),
    };
    Ok(EmailVerification::Verified {
        grant: match grant(conn, &welcome, None)? {
            GrantOutcome::Granted { transaction } => Some(transaction),
            // At the balance ceiling: the address is verified all the same.
            GrantOutcome::BalanceLimit => None,
            GrantOutcome::UnknownUser => {
                return Err(StoreError::Corrupt(format!(
                    "user {id} has no credit account"
                )));
            }
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Reads, on the read-only pool.

pub(super) fn user(row: &SqliteRow) -> Result<User, StoreError> {
    Ok(User {
        id: uuid(row, "id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, new: &NewUser) -> Result<Option<CreatedUser>, StoreError> {
        let new = new.clone();
        self.writer.write(move |conn| create_user(conn, &new)).await
    }

    async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE email = ?1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn find_user_by_google_subject(&self, subject: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT id, email, name, created_at FROM users WHERE google_subject = ?1")
                .bind(subject)
                .fetch_optional(&self.reader)
                .await?;
        row.as_ref().map(user).transpose()
    }

    async fn link_google_subject(&self, id: Uuid, subject: &str) -> Result<bool, StoreError> {
        let subject = subject.to_owned();
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE users SET google_subject = ?2, password_hash = NULL,
                             email_verified_at = COALESCE(email_verified_at, ?3)
                         WHERE id = ?1 AND google_subject IS NULL
                           AND NOT EXISTS (SELECT 1 FROM users WHERE google_subject = ?2)",
                    )?
                    .execute(params![id.to_string(), subject, timestamp(now())])?
                    == 1)
            })
            .await
    }

    async fn verify_email(&self, id: Uuid, credits: i64) -> Result<EmailVerification, StoreError> {
        self.writer
            .write(move |conn| verify_email(conn, id, credits))
            .await
    }

    async fn email_verified(&self, id: Uuid) -> Result<Option<bool>, StoreError> {
        let verified: Option<Option<String>> =
            sqlx::query_scalar("SELECT email_verified_at FROM users WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.reader)
                .await?;
        Ok(verified.map(|at| at.is_some()))
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
                    .execute(params![id.to_string(), hash])?
                    == 1)
            })
            .await
    }

    async fn find_credentials(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, created_at, password_hash FROM users WHERE email = ?1",
        )
        .bind(email.trim().to_lowercase())
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((user(&row)?, row.try_get("password_hash")?)))
    }

    async fn roles(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = ?1 ORDER BY role")
                .bind(id.to_string())
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn permissions(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT rp.permission FROM user_roles ur
             JOIN role_permissions rp ON rp.role = ur.role WHERE ur.user_id = ?1 ORDER BY 1",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await?)
    }

    async fn assign_role(&self, id: Uuid, role: Role) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO user_roles (user_id, role) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![id.to_string(), role.as_str()])?;
                Ok(())
            })
            .await
    }

    async fn search_users(
        &self,
        query: &str,
        cursor: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, email, name, created_at FROM users
             WHERE (?1 = '' OR email LIKE ?2 ESCAPE '\\' OR name LIKE ?2 ESCAPE '\\' OR id = ?1)
               AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4",
        )
        .bind(query)
        .bind(crate::users::contains_pattern(query))
        .bind(cursor.map(|c| c.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(user).collect()
    }

    async fn sign_in_methods(&self, id: Uuid) -> Result<Option<Vec<String>>, StoreError> {
        let row = sqlx::query(
            "SELECT google_subject IS NOT NULL AS google, password_hash IS NOT NULL AS password
             FROM users WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(crate::users::methods(
                r.try_get("google")?,
                r.try_get("password")?,
            ))
        })
        .transpose()
    }

    async fn revoke_role(&self, id: Uuid, role: Role) -> Result<bool, StoreError> {
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2")?
                    .execute(params![id.to_string(), role.as_str()])?
                    == 1)
            })
            .await
    }
}
