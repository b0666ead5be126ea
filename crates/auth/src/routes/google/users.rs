//! Which user a verified Google account signs in as: found by its subject, linked by its
//! email, or created.

use crate::AppState;

/// The user a Google account signs in as.
pub(super) struct Found {
    pub(super) user: hub_ledger::users::User,
    /// The Google account was linked just now to an account found by its email.
    pub(super) linked: bool,
}

/// Why a verified Google account cannot be signed in; shown to the person, never retried.
pub(super) struct Refusal(pub(super) &'static str);

/// The user of a Google account: found by its subject, else linked by its verified email (when
/// that user has no Google account yet; an unverified password account then gets the new-user
/// credits it was owed), else created with the new-user credits.
pub(super) async fn find_or_create_user(
    state: &AppState,
    subject: &str,
    email: &str,
    name: &str,
) -> anyhow::Result<Result<Found, Refusal>> {
    // Display names are free text at Google: keep them printable and of a sane length.
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    let name = if name.trim().is_empty() {
        email.split('@').next().unwrap_or("user").to_owned()
    } else {
        name
    };
    let Ok(new) = hub_ledger::users::NewUser::new(
        email,
        &name,
        state.config.new_user_credits,
        hub_ledger::users::Role::User,
    ) else {
        return Ok(Err(Refusal(
            "Google gave an email address this hub cannot use.",
        )));
    };
    let users = &state.users;
    for _ in 0..3 {
        if let Some(user) = users.find_user_by_google_subject(subject).await? {
            return Ok(Ok(Found {
                user,
                linked: false,
            }));
        }
        if let Some(user) = users.find_user_by_email(email).await? {
            // Whoever registered this address with a password before its owner proved it may
            // hold tokens: everything issued to the account ends before the link, so that
            // nothing issued before it can outlive it, even if this step is interrupted. (An
            // account without a password had no way to be signed in by anyone else.)
            let has_password = users
                .find_credentials(email)
                .await?
                .is_some_and(|(_, hash)| hash.is_some());
            if has_password {
                state.sessions.end_everything(user.id).await?;
            }
            // Google has just proved the address: a password account that never proved it gets
            // its new-user credits now (once: a proven address is never granted again).
            users
                .verify_email(user.id, state.config.new_user_credits)
                .await?;
            if users.link_google_subject(user.id, subject).await? {
                return Ok(Ok(Found { user, linked: true }));
            }
            if users.find_user_by_google_subject(subject).await?.is_none() {
                // The address's account belongs to another Google account: never re-point it.
                return Ok(Err(Refusal(
                    "This email address belongs to an account linked to another Google account.",
                )));
            }
            continue;
        }
        if let Some(created) = users
            .create_user(&new.clone().with_google_subject(subject))
            .await?
        {
            return Ok(Ok(Found {
                user: created.user,
                linked: false,
            }));
        }
        // A concurrent sign-in created the user first: look again.
    }
    anyhow::bail!("the user changed under three attempts")
}
