//! `hub oauth-client create|list|revoke`: the apps the operator lets ask users for access (a GPT
//! Action, a partner's server). A confidential client's secret is printed once; only its hash is
//! kept.

use clap::Subcommand;
use hub_config::Env;
use hub_ledger::oauth::{Registration, new_client};
use serde_json::json;

use crate::{open, print};

#[derive(Subcommand)]
pub(crate) enum OAuthClientCommand {
    /// Registers an app and prints its client id (and secret, for a confidential one), once.
    Create {
        /// The app's name, shown to users on the consent page.
        #[arg(long)]
        name: String,
        /// An exact redirect URI (https, or http on a loopback address); repeat for more.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A confidential client, with a secret (a GPT Action: "Client Secret").
        #[arg(long)]
        confidential: bool,
        /// Space- or comma-separated: credits:read, credits:spend, mcp:tools (default: all).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Lists the apps (never their secrets).
    List,
    /// Revokes an app by its client id (`oc_…`), and every grant users gave it.
    Revoke {
        /// The client id.
        id: String,
    },
}

pub(crate) async fn run(env: &Env, command: OAuthClientCommand) -> anyhow::Result<()> {
    let database = open(env).await?;
    let store = hub_ledger::store::open(database.clone());
    let result = match command {
        OAuthClientCommand::Create {
            name,
            redirect_uris,
            confidential,
            scopes,
        } => {
            let scopes: Vec<String> = scopes
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect();
            let client = new_client(
                &name,
                &redirect_uris,
                confidential,
                &scopes,
                Registration::Operator,
            )?;
            store.insert_oauth_client(&client).await?;
            let base = env.public_base_url()?;
            print(&json!({
                "client_id": client.record.id,
                "client_secret": client.secret,
                "name": client.record.name,
                "redirect_uris": client.record.redirect_uris,
                "scopes": client.record.scopes.join(" "),
                "authorization_url": format!("{base}/oauth/authorize"),
                "token_url": format!("{base}/oauth/token"),
                "note": if confidential { "the secret is shown once: only its hash is kept" } else { "a public client: it must use PKCE (S256)" },
            }));
            Ok(())
        }
        OAuthClientCommand::List => {
            print(&serde_json::to_value(store.list_oauth_clients().await?)?);
            Ok(())
        }
        OAuthClientCommand::Revoke { id } => {
            if store.revoke_oauth_client(&id).await? {
                print(&json!({ "client_id": id, "revoked": true }));
                Ok(())
            } else {
                Err(anyhow::anyhow!("no live OAuth client has the id {id}"))
            }
        }
    };
    database.close().await;
    result
}
