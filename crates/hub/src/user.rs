//! `hub user create|role|set-password`: users, the roles that give operators their permissions,
//! and a password an operator sets so someone can sign in on a fresh install.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;
use hub_config::Env;
use hub_core::users::{NewUser, Role};
use serde_json::json;
use uuid::Uuid;

use crate::{open, print};

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Creates a user (and their credit account).
    Create {
        /// E-mail address.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Credits to start with, recorded as a grant.
        #[arg(long, default_value_t = 0)]
        credits: i64,
        /// `user`, `support`, `finance` or `admin`.
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Gives a user a role (`admin`, `support`, `finance` or `user`), or takes it with --revoke.
    Role {
        /// The user's id.
        #[arg(long)]
        user: Uuid,
        /// The role.
        #[arg(long)]
        role: String,
        /// Take the role away instead.
        #[arg(long)]
        revoke: bool,
    },
    /// Sets a user's password, read from standard input (8 to 128 characters; one line).
    SetPassword {
        /// The user's id.
        #[arg(long)]
        user: Uuid,
    },
}

fn role(name: &str) -> anyhow::Result<Role> {
    Role::parse(name).context("--role must be user, support, finance or admin")
}

pub(crate) async fn run(env: &Env, command: UserCommand) -> anyhow::Result<()> {
    let database = open(env).await?;
    let store = hub_core::ledger::store::open(database.clone());
    let result = match command {
        UserCommand::Create {
            email,
            name,
            credits,
            role: name_of_role,
        } => {
            let role = role(&name_of_role)?;
            let new = NewUser::new(&email, &name, credits, role)?;
            let Some(created) = store.create_user(&new).await? else {
                bail!("a user with the email {} exists", new.email);
            };
            print(&json!({
                "id": created.user.id,
                "email": created.user.email,
                "name": created.user.name,
                "role": role.as_str(),
                "balance": created.balance,
            }));
            Ok(())
        }
        UserCommand::Role {
            user,
            role: name_of_role,
            revoke,
        } => {
            let role = role(&name_of_role)?;
            if store.find_user(user).await?.is_none() {
                bail!("no user has the id {user}");
            }
            let before = store.roles(user).await?;
            if revoke {
                store.revoke_role(user, role).await?;
            } else {
                store.assign_role(user, role).await?;
            }
            let after = store.roles(user).await?;
            let changed = before != after;
            if changed {
                let action = if revoke {
                    "user.role.revoke"
                } else {
                    "user.role.assign"
                };
                let mut audit = hub_core::ledger::admin::AuditEntry::on_user("cli", action, user);
                audit.before = Some(json!({ "roles": before }));
                audit.after = Some(json!({ "roles": after }));
                store.record_audit(&audit).await?;
            }
            print(&json!({
                "id": user,
                "roles": store.roles(user).await?,
                "permissions": store.permissions(user).await?,
                "changed": changed,
            }));
            Ok(())
        }
        UserCommand::SetPassword { user } => set_password(&store, user).await,
    };
    database.close().await;
    result
}

async fn set_password(
    store: &std::sync::Arc<dyn hub_core::Store>,
    user: Uuid,
) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .take(1024)
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input.trim_end_matches(['\r', '\n']).to_owned();
    if !hub_auth::passwords::acceptable(&password) {
        bail!("a password is 8 to 128 characters");
    }
    let hash = hub_auth::passwords::hash(password)
        .await
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    if !store.set_password_hash(user, &hash).await? {
        bail!("no user has the id {user}");
    }
    print(&json!({ "id": user, "password_set": true }));
    Ok(())
}
