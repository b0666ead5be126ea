//! `hub webhook`: the endpoints that receive the hub's events (Standard Webhooks, signed with a
//! `whsec_` secret each, shown once).

use clap::Subcommand;
use hub_config::Env;
use hub_ledger::admin::AuditEntry;
use hub_ledger::webhooks::{EVENT_TYPES, new_endpoint};
use serde_json::json;

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Registers an endpoint and prints its signing secret, once.
    Create {
        /// Where to POST events (http:// or https://).
        #[arg(long)]
        url: String,
        /// Comma-separated: credits.low, credits.depleted, credits.granted, credits.refunded, payment.succeeded.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Lists the endpoints (never their secrets).
    List,
    /// Lists the latest deliveries and their outcomes.
    Deliveries {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Stops deliveries to an endpoint (they wait until it is enabled again).
    Disable {
        /// The endpoint's id (`ep_…`).
        id: String,
    },
    /// Starts deliveries to an endpoint again.
    Enable {
        /// The endpoint's id (`ep_…`).
        id: String,
    },
    /// Deletes an endpoint and its deliveries.
    Delete {
        /// The endpoint's id (`ep_…`).
        id: String,
    },
}

/// Runs a `hub webhook` command.
pub async fn run(env: &Env, command: WebhookCommand) -> anyhow::Result<()> {
    let database = super::open(env).await?;
    let store = hub_core::ledger::store::open(database.clone());
    let result = async {
        match command {
            WebhookCommand::Create { url, events } => {
                let made = new_endpoint(&url, &events).map_err(|e| {
                    anyhow::anyhow!("{e} (event types: {})", EVENT_TYPES.join(", "))
                })?;
                store
                    .insert_endpoint(&made, &made.created_by("cli"))
                    .await?;
                super::print(&json!({
                    "id": made.endpoint.id,
                    "url": made.endpoint.url,
                    "events": made.endpoint.events,
                    "secret": made.secret,
                    "note": "shown once: verify deliveries with it (Standard Webhooks)",
                }));
            }
            WebhookCommand::List => {
                super::print(&serde_json::to_value(store.list_endpoints().await?)?);
            }
            WebhookCommand::Deliveries { limit } => {
                let filter = hub_ledger::webhooks::DeliveryFilter {
                    limit: limit.clamp(1, hub_ledger::webhooks::MAX_DELIVERY_PAGE),
                    ..Default::default()
                };
                super::print(&serde_json::to_value(
                    store.list_deliveries(&filter).await?,
                )?);
            }
            WebhookCommand::Disable { id } => toggle(&store, &id, false).await?,
            WebhookCommand::Enable { id } => toggle(&store, &id, true).await?,
            WebhookCommand::Delete { id } => {
                let audit = AuditEntry::on_webhook("cli", "webhook.delete", &id);
                if !store.delete_endpoint(&id, &audit).await? {
                    anyhow::bail!("no endpoint has the id {id}");
                }
                super::print(&json!({ "id": id, "deleted": true }));
            }
        }
        Ok(())
    }
    .await;
    database.close().await;
    result
}

async fn toggle(
    store: &std::sync::Arc<dyn hub_core::Store>,
    id: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    if !store.set_endpoint_enabled(id, enabled).await? {
        anyhow::bail!("no endpoint has the id {id}");
    }
    super::print(&json!({ "id": id, "enabled": enabled }));
    Ok(())
}
