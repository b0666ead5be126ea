//! Paid top-ups with Stripe Checkout: credit packs from `CREDIT_PACKS`, a Checkout Session per
//! purchase, and the webhook that grants a pack once per confirmed payment. Not one credit
//! without a payment Stripe signed for, and never twice for one payment.

pub mod stripe;

use std::sync::Arc;

use hub_config::{ConfigError, Env, ExposeSecret, SecretString};

/// A credit pack: so many credits for so much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    /// The credits, as written in `CREDIT_PACKS` (`metadata[pack]`).
    pub credits: i64,
    /// The price in the currency's minor unit (cents).
    pub amount: i64,
    /// Lower-case ISO currency code.
    pub currency: String,
}

/// Parses `CREDIT_PACKS`: `credits:price:currency` by commas, e.g. `100:4.99:usd,500:19.99:usd`.
/// Prices have at most two decimals (currencies with cents).
pub fn parse_packs(text: &str) -> Result<Vec<Pack>, String> {
    let mut packs: Vec<Pack> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("{item:?} is not credits:price:currency, e.g. 100:4.99:usd");
        let mut parts = item.split(':');
        let (Some(credits), Some(price), Some(currency), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let credits: i64 = credits.parse().map_err(|_| bad())?;
        let (whole, cents) = price.split_once('.').unwrap_or((price, "0"));
        let cents = format!("{cents:0<2}");
        let amount = match (whole.parse::<i64>(), cents.len(), cents.parse::<i64>()) {
            (Ok(whole), 2, Ok(cents)) if whole >= 0 => whole * 100 + cents,
            _ => return Err(bad()),
        };
        let currency = currency.to_ascii_lowercase();
        let valid = hub_ledger::validate_amount("credits", credits, 1).is_ok()
            && amount > 0
            && currency.len() == 3
            && currency.bytes().all(|b| b.is_ascii_lowercase());
        if !valid || packs.iter().any(|p| p.credits == credits) {
            return Err(format!("{}; each pack's credits once", bad()));
        }
        packs.push(Pack {
            credits,
            amount,
            currency,
        });
    }
    Ok(packs)
}

/// Payments' configuration.
#[derive(Debug, Clone, Default)]
pub struct PaymentsConfig {
    /// `CREDIT_PACKS` (none: no purchases).
    pub packs: Vec<Pack>,
    /// `STRIPE_SECRET_KEY`: makes Checkout Sessions.
    pub secret_key: Option<SecretString>,
    /// `STRIPE_WEBHOOK_SECRET` (`whsec_…`): checks deliveries to `/webhooks/stripe`.
    pub webhook_secret: Option<SecretString>,
    /// `STRIPE_API_BASE`, default `https://api.stripe.com`.
    pub api_base: String,
    /// `CHECKOUT_SUCCESS_URL`, default `PUBLIC_BASE_URL/account?paid=1`.
    pub success_url: String,
    /// `CHECKOUT_CANCEL_URL`, default `PUBLIC_BASE_URL/account`.
    pub cancel_url: String,
}

impl PaymentsConfig {
    /// Reads the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let packs =
            parse_packs(&env.string_or("CREDIT_PACKS", "")).map_err(|problem| ConfigError {
                name: "CREDIT_PACKS".into(),
                problem,
                expected: "credits:price:currency by commas, e.g. 100:4.99:usd,500:19.99:usd"
                    .into(),
            })?;
        let base = env.public_base_url()?;
        Ok(Self {
            packs,
            secret_key: env.secret("STRIPE_SECRET_KEY"),
            webhook_secret: env.secret("STRIPE_WEBHOOK_SECRET"),
            api_base: env
                .string_or("STRIPE_API_BASE", "https://api.stripe.com")
                .trim_end_matches('/')
                .to_owned(),
            success_url: env.string_or("CHECKOUT_SUCCESS_URL", &format!("{base}/account?paid=1")),
            cancel_url: env.string_or("CHECKOUT_CANCEL_URL", &format!("{base}/account")),
        })
    }

    /// The pack named by its credits.
    pub fn pack(&self, credits: &str) -> Option<&Pack> {
        let credits: i64 = credits.parse().ok()?;
        self.packs.iter().find(|p| p.credits == credits)
    }
}

/// What the payment routes share.
#[derive(Clone)]
pub struct Payments {
    /// The configuration.
    pub config: Arc<PaymentsConfig>,
    /// Makes Checkout Sessions, when a secret key is set.
    pub checkout: Option<Arc<dyn stripe::Checkout>>,
}

impl Payments {
    /// Payments as configured: Stripe's API behind [`stripe::Checkout`] when there is a key.
    pub fn new(config: PaymentsConfig) -> Self {
        let checkout = config.secret_key.as_ref().map(|key| {
            Arc::new(stripe::StripeApi {
                http: reqwest::Client::new(),
                base: config.api_base.clone(),
                secret_key: key.expose_secret().to_owned(),
            }) as Arc<dyn stripe::Checkout>
        });
        Self {
            config: Arc::new(config),
            checkout,
        }
    }
}

/// Why a checkout did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutRefusal {
    /// No `STRIPE_SECRET_KEY`: purchases are not set up.
    NotConfigured,
    /// No pack of these credits; the packs offered, by their credits.
    UnknownPack(Vec<i64>),
    /// Stripe did not make the session (the reason is logged).
    Provider,
}

/// A Checkout Session made for a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The session, with the payment page's URL.
    pub session: stripe::CheckoutSession,
    /// The pack it sells.
    pub pack: Pack,
}

impl Payments {
    /// Whether a buyer can be sent to pay: a key and at least one pack.
    pub fn on_sale(&self) -> bool {
        self.checkout.is_some() && !self.config.packs.is_empty()
    }

    /// Starts a purchase of the pack named by its credits (`"100"`) for a user: the one way a
    /// Checkout Session is made, for the API and the account page alike.
    pub async fn start_checkout(
        &self,
        user_id: uuid::Uuid,
        pack: &str,
    ) -> Result<Started, CheckoutRefusal> {
        let Some(checkout) = &self.checkout else {
            return Err(CheckoutRefusal::NotConfigured);
        };
        let Some(pack) = self.config.pack(pack) else {
            let offered = self.config.packs.iter().map(|p| p.credits).collect();
            return Err(CheckoutRefusal::UnknownPack(offered));
        };
        let request = stripe::CheckoutRequest {
            user_id,
            pack: pack.credits.to_string(),
            unit_amount: pack.amount,
            currency: pack.currency.clone(),
            success_url: self.config.success_url.clone(),
            cancel_url: self.config.cancel_url.clone(),
        };
        match checkout.create(&request).await {
            Ok(session) => Ok(Started {
                session,
                pack: pack.clone(),
            }),
            Err(why) => {
                tracing::warn!(error = %why, "Stripe did not make a Checkout Session");
                Err(CheckoutRefusal::Provider)
            }
        }
    }
}

impl Pack {
    /// The price as people write it: `4.99 USD`.
    pub fn price(&self) -> String {
        format!(
            "{}.{:02} {}",
            self.amount / 100,
            self.amount % 100,
            self.currency.to_ascii_uppercase()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_are_read_as_written() {
        let packs = parse_packs("100:4.99:usd, 500:19.99:USD,1000:30:thb,7:0.5:eur").unwrap();
        assert_eq!(
            packs
                .iter()
                .map(|p| (p.credits, p.amount, p.currency.as_str()))
                .collect::<Vec<_>>(),
            [
                (100, 499, "usd"),
                (500, 1999, "usd"),
                (1000, 3000, "thb"),
                (7, 50, "eur")
            ]
        );
        assert_eq!(parse_packs("").unwrap(), []);
        for bad in [
            "100",
            "100:4.999:usd",
            "0:1:usd",
            "100:-1:usd",
            "100:1:us",
            "1:1:usd,1:2:usd",
            "a:1:usd",
            "100:1:usd:x",
        ] {
            assert!(parse_packs(bad).is_err(), "{bad}");
        }
    }
}
