//! The contract every session store keeps, on SQLite and (with `HUB_TEST_REDIS_URL`) Redis.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hub_auth::clock::ManualClock;
use hub_auth::sessions::{SessionRecord, Sessions, Verified, token_hash};
use hub_test_support::{SessionBackend, session_backends, session_store};
use uuid::Uuid;

fn record(user_id: Uuid, id: &str, lifetime: chrono::Duration) -> SessionRecord {
    let now = Utc::now();
    SessionRecord {
        id: id.to_owned(),
        user_id,
        email: "u@example.com".into(),
        name: "U".into(),
        session_param: Some("conv-1".into()),
        return_to: Some("chatgpt".into()),
        created_at: now,
        expires_at: now + lifetime,
    }
}

#[tokio::test]
async fn sessions_are_stored_listed_and_revoked() {
    for backend in session_backends() {
        let (store, _db) = session_store(backend).await;
        let user = Uuid::now_v7();
        let week = chrono::Duration::days(7);
        let hash_a = token_hash(&format!("{user}-a"));
        let a = record(user, "a", week);
        store.create(&hash_a, &a, 10, Utc::now()).await.unwrap();
        let b = record(user, "b", week);
        store
            .create(&token_hash(&format!("{user}-b")), &b, 10, Utc::now())
            .await
            .unwrap();
        assert_eq!(
            store.get(&hash_a).await.unwrap(),
            Some(a.clone()),
            "{backend:?}"
        );
        assert_eq!(store.get(&token_hash("none")).await.unwrap(), None);
        let ids: Vec<_> = store
            .list(user, Utc::now())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);

        assert!(store.revoke(&hash_a).await.unwrap());
        assert!(!store.revoke(&hash_a).await.unwrap());
        assert_eq!(store.get(&hash_a).await.unwrap(), None);
        assert!(
            !store.revoke_by_id(Uuid::now_v7(), "b").await.unwrap(),
            "another user's id"
        );
        assert!(store.revoke_by_id(user, "b").await.unwrap());
        assert!(store.list(user, Utc::now()).await.unwrap().is_empty());

        for i in 0..3 {
            let r = record(user, &format!("all-{i}"), week);
            store
                .create(&token_hash(&format!("{user}-all-{i}")), &r, 10, Utc::now())
                .await
                .unwrap();
        }
        assert_eq!(store.revoke_all(user).await.unwrap(), 3);
        assert!(store.list(user, Utc::now()).await.unwrap().is_empty());
        assert_eq!(
            store
                .get(&token_hash(&format!("{user}-all-0")))
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn a_user_keeps_at_most_the_cap_and_loses_the_oldest() {
    for backend in session_backends() {
        let (store, _db) = session_store(backend).await;
        let user = Uuid::now_v7();
        let mut ended = 0;
        for i in 0..12 {
            let mut r = record(user, &format!("s{i:02}"), chrono::Duration::days(7));
            r.created_at += chrono::Duration::milliseconds(i);
            r.expires_at += chrono::Duration::milliseconds(i);
            ended += store
                .create(&token_hash(&format!("{user}-{i}")), &r, 10, Utc::now())
                .await
                .unwrap();
        }
        assert_eq!(ended, 2, "{backend:?}");
        let ids: Vec<_> = store
            .list(user, Utc::now())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, (2..12).map(|i| format!("s{i:02}")).collect::<Vec<_>>());
        assert_eq!(
            store.get(&token_hash(&format!("{user}-0"))).await.unwrap(),
            None
        );
        assert_eq!(
            store.get(&token_hash(&format!("{user}-1"))).await.unwrap(),
            None
        );
        assert!(
            store
                .get(&token_hash(&format!("{user}-2")))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn sessions_end_when_their_time_is_up() {
    for backend in session_backends() {
        let (store, _db) = session_store(backend).await;
        let clock = Arc::new(ManualClock::new());
        let sessions = Sessions::new(store.clone(), clock.clone(), chrono::Duration::days(7), 10);
        let user = Uuid::now_v7();
        let made = sessions
            .create(user, "u@example.com", "U", Some("conv"), Some("chatgpt"))
            .await
            .unwrap();
        assert!(
            matches!(
                sessions.verify(&made.token).await.unwrap(),
                Verified::Live(_)
            ),
            "{backend:?}"
        );
        clock.advance(chrono::Duration::days(7) - chrono::Duration::seconds(1));
        assert!(matches!(
            sessions.verify(&made.token).await.unwrap(),
            Verified::Live(_)
        ));
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(
            sessions.verify(&made.token).await.unwrap(),
            Verified::Invalid,
            "expired at 7 days"
        );
        assert!(sessions.list(user).await.unwrap().is_empty());
        assert_eq!(
            sessions.verify("VERIFIED-tooshort").await.unwrap(),
            Verified::Invalid
        );
        let other = sessions
            .create(user, "u@example.com", "U", None, None)
            .await
            .unwrap();
        assert!(sessions.revoke(&other.token).await.unwrap());
        assert_eq!(
            sessions.verify(&other.token).await.unwrap(),
            Verified::Invalid,
            "revoked"
        );
    }
}

#[tokio::test]
async fn one_time_values_are_taken_once() {
    for backend in session_backends() {
        let (store, _db) = session_store(backend).await;
        let key = Uuid::now_v7().to_string();
        store
            .put_once(&key, "state", Duration::from_secs(600), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            store.take_once(&key, Utc::now()).await.unwrap().as_deref(),
            Some("state"),
            "{backend:?}"
        );
        assert_eq!(
            store.take_once(&key, Utc::now()).await.unwrap(),
            None,
            "used once"
        );
        let concurrent = Uuid::now_v7().to_string();
        store
            .put_once(&concurrent, "x", Duration::from_secs(600), Utc::now())
            .await
            .unwrap();
        let takers: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                let key = concurrent.clone();
                tokio::spawn(async move { store.take_once(&key, Utc::now()).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for taker in takers {
            if taker.await.unwrap().is_some() {
                won += 1;
            }
        }
        assert_eq!(won, 1, "exactly one of twenty concurrent takers");
    }
}

#[tokio::test]
async fn a_value_taken_and_kept_is_gone_and_kept_at_once() {
    for backend in session_backends() {
        let (store, _db) = session_store(backend).await;
        // The keys share a hash tag, as the trait asks: one slot on a Redis Cluster.
        let tag = Uuid::now_v7();
        let (key, kept) = (
            format!("refresh:{{{tag}}}"),
            format!("refresh-used:{{{tag}}}"),
        );
        store
            .put_once(&key, "record", Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        let ttl = Duration::from_secs(60);
        assert_eq!(
            store
                .take_and_keep(&key, &kept, ttl, Utc::now())
                .await
                .unwrap()
                .as_deref(),
            Some("record"),
            "{backend:?}"
        );
        assert_eq!(
            store
                .take_and_keep(&key, &kept, ttl, Utc::now())
                .await
                .unwrap(),
            None,
            "taken once"
        );
        assert_eq!(
            store.peek_once(&kept, Utc::now()).await.unwrap().as_deref(),
            Some("record"),
            "kept"
        );
    }
}

#[tokio::test]
async fn tokens_are_never_stored_in_plain_text() {
    for backend in session_backends() {
        let (store, db) = session_store(backend).await;
        let sessions = Sessions::new(
            store,
            Arc::new(hub_auth::clock::SystemClock),
            chrono::Duration::days(7),
            10,
        );
        let made = sessions
            .create(Uuid::now_v7(), "u@example.com", "U", None, None)
            .await
            .unwrap();
        let secret = made.token.trim_start_matches("VERIFIED-").to_owned();
        match backend {
            SessionBackend::Sqlite => {
                let hub_storage::Database::Sqlite { reader, .. } = &db.database else {
                    unreachable!()
                };
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT token_hash, record FROM sessions")
                        .fetch_all(reader)
                        .await
                        .unwrap();
                assert!(!rows.is_empty());
                assert!(
                    rows.iter()
                        .all(|(h, r)| !h.contains(&secret) && !r.contains(&secret))
                );
            }
            SessionBackend::Redis | SessionBackend::RedisCluster => {
                let (url, cluster) = backend.redis().unwrap();
                // On a cluster KEYS asks every primary and puts the answers together.
                let mut redis = hub_storage::redis_connection::connect(
                    &url,
                    cluster,
                    std::time::Duration::from_secs(1),
                )
                .await
                .unwrap();
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg("hub:*")
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                assert!(keys.iter().all(|k| !k.contains(&secret)));
                let session_keys: Vec<&String> = keys
                    .iter()
                    .filter(|k| k.starts_with("hub:session:"))
                    .collect();
                assert!(!session_keys.is_empty());
                for key in session_keys {
                    let value: Option<String> = redis::cmd("GET")
                        .arg(key)
                        .query_async(&mut redis)
                        .await
                        .unwrap();
                    assert!(!value.unwrap_or_default().contains(&secret));
                }
            }
        }
    }
}

#[tokio::test]
async fn kept_values_can_be_read_and_counters_count_within_their_window() {
    for backend in session_backends() {
        let (store, _db) = session_store(backend).await;
        let key = Uuid::now_v7().to_string();
        store
            .put_once(&key, "family-1", Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            store.peek_once(&key, Utc::now()).await.unwrap().as_deref(),
            Some("family-1"),
            "{backend:?}"
        );
        assert_eq!(
            store.peek_once(&key, Utc::now()).await.unwrap().as_deref(),
            Some("family-1"),
            "not taken"
        );

        let counter = format!("login:{}", Uuid::now_v7());
        assert_eq!(store.count(&counter, Utc::now()).await.unwrap().0, 0);
        for expected in 1..=3 {
            assert_eq!(
                store
                    .hit(&counter, Duration::from_secs(900), Utc::now())
                    .await
                    .unwrap(),
                expected
            );
        }
        let (count, left) = store.count(&counter, Utc::now()).await.unwrap();
        assert_eq!(count, 3);
        assert!(
            left > Duration::from_secs(890) && left <= Duration::from_secs(900),
            "{left:?}"
        );
        let short = format!("short:{}", Uuid::now_v7());
        store
            .hit(&short, Duration::from_millis(50), Utc::now())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            store.count(&short, Utc::now()).await.unwrap().0,
            0,
            "the window ended"
        );
        assert_eq!(
            store
                .hit(&short, Duration::from_secs(60), Utc::now())
                .await
                .unwrap(),
            1,
            "a new window"
        );
    }
}
