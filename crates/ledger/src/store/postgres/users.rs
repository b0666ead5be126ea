//! Users, their sign-in methods and roles.

use super::*;

pub(super) fn user(row: &PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: &NewUser) -> Result<Option<CreatedUser>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "INSERT INTO users (id, email, name, google_subject, password_hash, email_verified_at)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
             ON CONFLICT DO NOTHING RETURNING id, email, name, created_at",
        )
        .bind(Uuid::now_v7())
        .bind(&new.email)
        .bind(&new.name)
        .bind(new.google_subject.as_deref())
        .bind(new.password_hash.as_deref())
        .bind(new.email_verified)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let created = user(&row)?;
        sqlx::query("INSERT INTO credit_accounts (user_id) VALUES ($1)")
            .bind(created.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(created.id)
            .bind(new.role.as_str())
            .execute(&mut *tx)
            .await?;
        let grant = if new.initial_credits > 0 {
            let grant = Grant {
                user_id: created.id,
                amount: new.initial_credits,
                reason: "initial credits".to_owned(),
                request_id: None,
                terms: crate::grants::GrantTerms::default(),
            };
            match grant.apply(&mut tx, None).await? {
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
        tx.commit().await?;
        let balance = new.initial_credits;
        Ok(Some(CreatedUser {
            user: created,
            balance,
            grant,
        }))
    }

    async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    async fn find_user_by_google_subject(&self, subject: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT id, email, name, created_at FROM users WHERE google_subject = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    async fn link_google_subject(&self, id: Uuid, subject: &str) -> Result<bool, StoreError> {
        let linked = sqlx::query(
            "UPDATE users SET google_subject = $2, password_hash = NULL,
                 email_verified_at = COALESCE(email_verified_at, now())
             WHERE id = $1 AND google_subject IS NULL
               AND NOT EXISTS (SELECT 1 FROM users WHERE google_subject = $2)",
        )
        .bind(id)
        .bind(subject)
        .execute(&self.pool)
        .await;
        match linked {
            Ok(done) => Ok(done.rows_affected() == 1),
            // A concurrent link of the same subject won the race.
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_google_subject_key") => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn verify_email(&self, id: Uuid, credits: i64) -> Result<EmailVerification, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row lock of the conditional update orders concurrent calls: the second waits, then
        // finds the address verified.
        let verified = sqlx::query(
            "UPDATE users SET email_verified_at = now() WHERE id = $1 AND email_verified_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if verified == 0 {
            let exists = sqlx::query("SELECT 1 FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Ok(if exists {
                EmailVerification::AlreadyVerified
            } else {
                EmailVerification::UnknownUser
            });
        }
        let grant = if credits > 0 {
            let welcome = Grant {
                user_id: id,
                amount: credits,
                reason: "new-user credits: email verified".to_owned(),
                request_id: None,
                terms: crate::grants::GrantTerms::default(),
            };
            match welcome.apply(&mut tx, None).await? {
                GrantOutcome::Granted { transaction } => Some(transaction),
                // At the balance ceiling: the address is verified all the same.
                GrantOutcome::BalanceLimit => None,
                GrantOutcome::UnknownUser => {
                    return Err(StoreError::Corrupt(format!(
                        "user {id} has no credit account"
                    )));
                }
            }
        } else {
            None
        };
        tx.commit().await?;
        Ok(EmailVerification::Verified { grant })
    }

    async fn email_verified(&self, id: Uuid) -> Result<Option<bool>, StoreError> {
        let verified: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT email_verified_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(verified.map(|at| at.is_some()))
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(id)
                .bind(hash)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    async fn find_credentials(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, created_at, password_hash FROM users WHERE email = $1",
        )
        .bind(email.trim().to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((user(&row)?, row.try_get("password_hash")?)))
    }

    async fn roles(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn permissions(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT rp.permission FROM user_roles ur
             JOIN role_permissions rp ON rp.role = ur.role WHERE ur.user_id = $1 ORDER BY 1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn assign_role(&self, id: Uuid, role: Role) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(role.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn search_users(
        &self,
        query: &str,
        cursor: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, email, name, created_at FROM users
             WHERE ($1 = '' OR email ILIKE $2 ESCAPE '\\' OR name ILIKE $2 ESCAPE '\\'
                    OR id::text = $1)
               AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4",
        )
        .bind(query)
        .bind(crate::users::contains_pattern(query))
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user).collect::<Result<_, _>>()?)
    }

    async fn sign_in_methods(&self, id: Uuid) -> Result<Option<Vec<String>>, StoreError> {
        let row = sqlx::query(
            "SELECT google_subject IS NOT NULL AS google, password_hash IS NOT NULL AS password
             FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
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
        Ok(
            sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
                .bind(id)
                .bind(role.as_str())
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }
}
