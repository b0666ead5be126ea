//! The end-to-end tests, through HTTP with everything started by test-support: one file per
//! area, one binary for them all (`cargo test -p hub-tests --test e2e <area>::` runs one area).

mod account;
mod admin_keys;
mod admin_permissions;
mod admin_users;
mod auth_google_oauth;
mod auth_session_verification;
mod console;
mod core_credit_check;
mod core_credit_deduction;
mod core_credit_holds;
mod credits;
mod gateway_abuse;
mod gateway_openapi;
mod gateway_proxy;
mod gateway_trust;
mod grants;
mod limits_named;
mod mcp_results;
mod mcp_tools;
mod oauth_flow;
mod oauth_mcp;
mod oauth_refusals;
mod operations_files;
mod payments;
mod rate_limits;
mod replicas;
mod roles;
mod sora2_status_report;
mod usage;
