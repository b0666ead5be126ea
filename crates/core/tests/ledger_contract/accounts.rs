//! The account records beside the ledger: Google accounts, service keys, verified addresses with
//! their one-time credits, and password hashes.

use super::*;

#[tokio::test]
async fn google_accounts_are_found_and_linked_once() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let new = NewUser::new("g@example.com", "Gee", 10, Role::User)
            .unwrap()
            .with_google_subject("sub-1");
        let created = store.create_user(&new).await.unwrap().unwrap();
        let found = store
            .find_user_by_google_subject("sub-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, created.user.id, "{engine:?}");
        assert!(
            store
                .find_user_by_google_subject("sub-2")
                .await
                .unwrap()
                .is_none()
        );

        let other = user(&store, 0).await;
        assert!(
            !store.link_google_subject(other, "sub-1").await.unwrap(),
            "sub-1 belongs to Gee"
        );
        assert!(store.link_google_subject(other, "sub-2").await.unwrap());
        assert_eq!(
            store
                .find_user_by_google_subject("sub-2")
                .await
                .unwrap()
                .unwrap()
                .id,
            other
        );
        let twin = NewUser::new("twin@example.com", "Twin", 0, Role::User)
            .unwrap()
            .with_google_subject("sub-2");
        assert!(
            store.create_user(&twin).await.unwrap().is_none(),
            "one user per Google account"
        );
    }
}

#[tokio::test]
async fn service_keys_are_found_by_hash_until_revoked() {
    use hub_core::service_keys::{key_hash, new_key};
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let scopes = vec!["credits:check".to_owned(), "credits:deduct".to_owned()];
        let made = new_key("sora2", &scopes).unwrap();
        store.insert_service_key(&made).await.unwrap();
        let found = store
            .find_service_key(&key_hash(&made.key))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, made.record.id, "{engine:?}");
        assert_eq!(found.scopes, scopes);
        assert!(
            store
                .find_service_key(&key_hash("hub_sk_guess"))
                .await
                .unwrap()
                .is_none()
        );
        let listed = store.list_service_keys().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            !serde_json::to_string(&listed).unwrap().contains(&made.key),
            "never the key itself"
        );
        assert!(store.revoke_service_key(&made.record.id).await.unwrap());
        assert!(!store.revoke_service_key(&made.record.id).await.unwrap());
        assert!(
            store
                .find_service_key(&key_hash(&made.key))
                .await
                .unwrap()
                .is_none(),
            "revoked"
        );
        assert!(
            store.list_service_keys().await.unwrap()[0]
                .revoked_at
                .is_some()
        );
    }
}

#[tokio::test]
async fn an_address_is_verified_once_and_its_credits_granted_once() {
    use hub_core::users::EmailVerification;
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let new = NewUser::new("reg@example.com", "Reg", 0, Role::User)
            .unwrap()
            .with_password_hash("$argon2id$placeholder".into())
            .unverified();
        let id = store.create_user(&new).await.unwrap().unwrap().user.id;
        assert_eq!(
            store.email_verified(id).await.unwrap(),
            Some(false),
            "{engine:?}"
        );
        assert_eq!(store.balance(id).await.unwrap(), Some(0));

        // Twenty verifications at once: one grants, every other finds it done.
        let calls = (0..20).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.verify_email(id, 10).await.unwrap() })
        });
        let outcomes: Vec<EmailVerification> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let grants: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| match o {
                EmailVerification::Verified { grant } => Some(grant.as_ref().unwrap().amount),
                _ => None,
            })
            .collect();
        assert_eq!(grants, vec![10], "{engine:?}: {outcomes:?}");
        assert!(
            outcomes.iter().all(|o| matches!(
                o,
                EmailVerification::Verified { .. } | EmailVerification::AlreadyVerified
            )),
            "{outcomes:?}"
        );
        assert_eq!(store.balance(id).await.unwrap(), Some(10));
        assert_eq!(store.email_verified(id).await.unwrap(), Some(true));
        assert!(matches!(
            store.verify_email(id, 10).await.unwrap(),
            EmailVerification::AlreadyVerified
        ));
        assert!(matches!(
            store.verify_email(Uuid::new_v4(), 10).await.unwrap(),
            EmailVerification::UnknownUser
        ));
        assert_eq!(store.email_verified(Uuid::new_v4()).await.unwrap(), None);

        // Users made verified (Google, an operator) are never granted again; neither is a
        // password account Google linked, which counts as verified from then on.
        let google = NewUser::new("google@example.com", "G", 10, Role::User)
            .unwrap()
            .with_google_subject("sub-verified");
        let google = store.create_user(&google).await.unwrap().unwrap().user.id;
        let operator = user(&store, 100).await;
        for id in [google, operator] {
            assert_eq!(store.email_verified(id).await.unwrap(), Some(true));
            assert!(matches!(
                store.verify_email(id, 10).await.unwrap(),
                EmailVerification::AlreadyVerified
            ));
        }
        let unverified = NewUser::new("linked@example.com", "L", 0, Role::User)
            .unwrap()
            .with_password_hash("$argon2id$placeholder".into())
            .unverified();
        let linked = store
            .create_user(&unverified)
            .await
            .unwrap()
            .unwrap()
            .user
            .id;
        assert!(
            store
                .link_google_subject(linked, "sub-linked")
                .await
                .unwrap()
        );
        assert_eq!(store.email_verified(linked).await.unwrap(), Some(true));
        assert!(matches!(
            store.verify_email(linked, 10).await.unwrap(),
            EmailVerification::AlreadyVerified
        ));
        assert_eq!(store.balance(google).await.unwrap(), Some(10));
        assert_eq!(store.balance(operator).await.unwrap(), Some(100));
        assert_eq!(store.balance(linked).await.unwrap(), Some(0));
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn a_password_hash_is_replaced() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let new = NewUser::new("pw@example.com", "Pw", 0, Role::User)
            .unwrap()
            .with_password_hash("old-hash".into());
        let id = store.create_user(&new).await.unwrap().unwrap().user.id;
        assert!(
            store.set_password_hash(id, "new-hash").await.unwrap(),
            "{engine:?}"
        );
        let (_, hash) = store
            .find_credentials("pw@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hash.as_deref(), Some("new-hash"));
        assert!(!store.set_password_hash(Uuid::new_v4(), "x").await.unwrap());
    }
}
