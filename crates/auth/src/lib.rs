//! The auth service: Google sign-in that ends in a verification code, and the sessions behind it.
#![forbid(unsafe_code)]

pub mod clock;
pub mod sessions;
