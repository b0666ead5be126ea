//! Users, their roles and permissions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{InvalidInput, StoreError, Transaction};

/// A user of the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// UUIDv7.
    pub id: Uuid,
    /// Lower-case e-mail address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
}

/// A role; permissions hang off roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every permission.
    Admin,
    /// Read users and their history, refund, end sessions.
    Support,
    /// Grant and refund credits, read usage.
    Finance,
    /// Check and spend one's own credits.
    User,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Support => "support",
            Self::Finance => "finance",
            Self::User => "user",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "support" => Some(Self::Support),
            "finance" => Some(Self::Finance),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// A permission, as roles and service keys carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read balances and history; check a cost.
    Check,
    /// Debit.
    Deduct,
    /// Refund a debit.
    Refund,
    /// Grant credits.
    Grant,
    /// Read users, their balances and history (operators).
    UsersRead,
    /// Disable, enable and delete users (operators).
    UsersManage,
    /// End a user's sessions (operators).
    SessionsRevoke,
    /// Read usage reports (operators).
    UsageRead,
    /// Read the audit log (operators).
    AuditRead,
    /// Create, list and revoke service keys (operators).
    KeysManage,
}

impl Permission {
    /// The permission's name, as in service keys and the `permissions` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "credits:check",
            Self::Deduct => "credits:deduct",
            Self::Refund => "credits:refund",
            Self::Grant => "credits:grant",
            Self::UsersRead => "users:read",
            Self::UsersManage => "users:manage",
            Self::SessionsRevoke => "sessions:revoke",
            Self::UsageRead => "usage:read",
            Self::AuditRead => "audit:read",
            Self::KeysManage => "keys:manage",
        }
    }

    /// Whether a user may do this for themselves without an operator's role.
    pub fn own(self) -> bool {
        matches!(self, Self::Check | Self::Deduct)
    }
}

/// `text` as a SQL `LIKE … ESCAPE '\'` pattern that matches it anywhere.
pub fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The sign-in methods of a user's stored credentials.
pub fn methods(google_subject: bool, password: bool) -> Vec<String> {
    let mut methods = Vec::new();
    if google_subject {
        methods.push("google".to_owned());
    }
    if password {
        methods.push("password".to_owned());
    }
    methods
}

/// An e-mail address as stored: trimmed and lower case, checked for the shape `name@domain.tld`.
pub fn normalize_email(email: &str) -> Result<String, InvalidInput> {
    let email = email.trim().to_lowercase();
    let valid_email = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid_email {
        return Err(InvalidInput {
            code: "invalid_email",
            message: "email must be an address like name@example.com".into(),
            too_large: false,
        });
    }
    Ok(email)
}

/// A user to create, with the credits they start with.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// E-mail address (normalised to lower case).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Credits granted at creation, as a `grant` transaction.
    pub initial_credits: i64,
    /// The role given.
    pub role: Role,
    /// The Google account's subject, for users who sign in with Google.
    pub google_subject: Option<String>,
    /// An argon2id PHC string, for users who sign in with a password.
    pub password_hash: Option<String>,
    /// Whether the address counts as proven at creation (Google, or an operator's `hub user
    /// create`); a registration with a password is not, until its verification link is followed.
    pub email_verified: bool,
}

impl NewUser {
    /// Checks and normalises the fields.
    pub fn new(
        email: &str,
        name: &str,
        initial_credits: i64,
        role: Role,
    ) -> Result<Self, InvalidInput> {
        let email = normalize_email(email)?;
        // Counted and checked as sent (the API document's maxLength and pattern), kept trimmed.
        let too_long = name.chars().count() > 200;
        let control = name.chars().any(char::is_control);
        let name = name.trim();
        if name.is_empty() || too_long || control {
            return Err(InvalidInput {
                code: "invalid_name",
                message: "name must be 1 to 200 characters".into(),
                too_large: false,
            });
        }
        crate::validate_amount("credits", initial_credits, 0)?;
        Ok(Self {
            email,
            name: name.to_owned(),
            initial_credits,
            role,
            google_subject: None,
            password_hash: None,
            email_verified: true,
        })
    }

    /// The same user, signing in with a password of this hash.
    pub fn with_password_hash(mut self, hash: String) -> Self {
        self.password_hash = Some(hash);
        self
    }

    /// The same user, signed in with the Google account `subject` (which proves the address).
    pub fn with_google_subject(mut self, subject: &str) -> Self {
        self.google_subject = Some(subject.to_owned());
        self.email_verified = true;
        self
    }

    /// The same user, with an address nobody has proven yet (a registration with a password):
    /// the new-user credits wait for [`UserStore::verify_email`].
    pub fn unverified(mut self) -> Self {
        self.email_verified = false;
        self
    }
}

/// What verifying a user's address did.
#[derive(Debug, Clone)]
pub enum EmailVerification {
    /// The address is now verified, for the first time; `grant` is the new-user credits (none
    /// when the amount was 0 or the balance is at its ceiling).
    Verified {
        /// The grant made with it.
        grant: Option<Transaction>,
    },
    /// It was verified before: nothing changed, nothing was granted.
    AlreadyVerified,
    /// No such user.
    UnknownUser,
}

/// A user just created, with their balance and the grant that made it.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    /// The user.
    pub user: User,
    /// Their balance.
    pub balance: i64,
    /// The grant of their initial credits, if any.
    pub grant: Option<Transaction>,
}

/// Storage of users and their roles.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user, their credit account and the grant of their initial credits, at once.
    /// `Ok(None)` when the e-mail address (or the Google account) is taken.
    async fn create_user(&self, new: &NewUser) -> Result<Option<CreatedUser>, StoreError>;
    /// A user by id.
    async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    /// A user by e-mail address.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    /// A user by the subject of their Google account.
    async fn find_user_by_google_subject(&self, subject: &str) -> Result<Option<User>, StoreError>;
    /// Links a Google account to a user who has none yet; `false` if the user is linked already
    /// or another user has this account. Linking drops any password: Google has just proved who
    /// owns the address, and a password set before was set by someone who never had to. The
    /// address counts as verified from then on (call [`UserStore::verify_email`] first for the
    /// new-user credits an unverified account is owed).
    async fn link_google_subject(&self, id: Uuid, subject: &str) -> Result<bool, StoreError>;
    /// Marks the user's address verified and, only if it was not verified before, grants them
    /// `credits` (the new-user credits), in one database transaction: of any number of concurrent
    /// calls, one grants.
    async fn verify_email(&self, id: Uuid, credits: i64) -> Result<EmailVerification, StoreError>;
    /// Whether the user's address is verified (`None`: no such user).
    async fn email_verified(&self, id: Uuid) -> Result<Option<bool>, StoreError>;
    /// Replaces the user's password hash; `false` if there is no such user.
    async fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<bool, StoreError>;
    /// A user by e-mail address, with their password hash (`None` for Google-only accounts).
    async fn find_credentials(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError>;
    /// The names of a user's roles.
    async fn roles(&self, id: Uuid) -> Result<Vec<String>, StoreError>;
    /// The permissions of a user through their roles.
    async fn permissions(&self, id: Uuid) -> Result<Vec<String>, StoreError>;
    /// Gives a user a role (no-op if they have it).
    async fn assign_role(&self, id: Uuid, role: Role) -> Result<(), StoreError>;
    /// Takes a role from a user; whether they had it.
    async fn revoke_role(&self, id: Uuid, role: Role) -> Result<bool, StoreError>;
    /// Users whose email or name contains `query` (case-insensitive), or whose id it is; every
    /// user for an empty query. Newest first, after `cursor` (a user's id), at most `limit`.
    async fn search_users(
        &self,
        query: &str,
        cursor: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// How a user signs in (`google`, `password`); `None` for an unknown user.
    async fn sign_in_methods(&self, id: Uuid) -> Result<Option<Vec<String>>, StoreError>;
}
