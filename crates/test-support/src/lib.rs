//! What the tests share: a fresh database on every engine, the real services started on port 0,
//! and an HTTP client that speaks to them as the gateway does.
//!
//! PostgreSQL runs are switched on by `HUB_TEST_DATABASE_URL` (a URL of a database on the server
//! to use; each test gets a database of its own there, dropped afterwards);
//! `HUB_TEST_REQUIRE_SERVICES=1` turns a missing URL into a failure instead of a skip.
//!
//! The rooms: `databases` (engines, test databases, session stores), `services` (the core or
//! the auth service alone), `hub` (the whole hub, through [`SpawnedHub::builder`]), `clients`
//! (callers and replies), `sign_in` (a browser through the fake Google), and the fakes.
#![forbid(unsafe_code)]
#![allow(clippy::missing_panics_doc)]

pub mod fake_google;
pub mod fake_openai;
pub mod fake_stripe;
pub mod proxy;
pub mod smtp;

mod clients;
mod databases;
mod hub;
mod services;
mod sign_in;

pub use clients::{As, Reply, browser, count, user_with};
pub use databases::{
    Engine, SessionBackend, TestDatabase, engines, redis_cluster_configured, replace_database,
    service_configured, session_backends, session_store,
};
pub use hub::{HubBackends, HubBuilder, SpawnedHub, hub_backends};
pub use services::{
    SpawnedAuth, SpawnedCore, random_token, spawn_auth, spawn_auth_configured,
    spawn_auth_with_redis, spawn_core,
};
pub use sign_in::{OPERATOR_PASSWORD, SignIn, sign_in_at};
