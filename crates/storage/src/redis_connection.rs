//! The connection to Redis the services share: one server through a self-reconnecting
//! multiplexed connection, or a Redis Cluster (`REDIS_CLUSTER=1`) through its seed nodes.
//!
//! Both are [`redis::aio::ConnectionLike`], so scripts, commands and pipelines run on either. On
//! a cluster, a script or pipeline must keep all its keys in one hash slot: the callers put the
//! part of a key that must match between `{` and `}` (a hash tag).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Why Redis could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    /// `REDIS_URL` (with `REDIS_CLUSTER`) is unusable.
    #[error("REDIS_URL: {0}")]
    Url(String),
    /// Redis did not answer or refused.
    #[error("{0}")]
    Unreachable(String),
}

/// A connection to one Redis server or to a Redis Cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub enum RedisConnection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster: commands go to the primary of their keys' slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

/// Connects to `url`: one `redis://` URL, or with `cluster` the comma-separated URLs of some of
/// the cluster's nodes. Connecting and every command fail after `timeout` instead of hanging.
pub async fn connect(
    url: &str,
    cluster: bool,
    timeout: Duration,
) -> Result<RedisConnection, RedisConnectError> {
    let seeds: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if cluster {
        connect_cluster(seeds, timeout).await
    } else {
        let [url] = seeds[..] else {
            return Err(RedisConnectError::Url(
                "several URLs name a Redis Cluster: set REDIS_CLUSTER=1".into(),
            ));
        };
        connect_single(url, timeout).await
    }
}

async fn connect_single(
    url: &str,
    timeout: Duration,
) -> Result<RedisConnection, RedisConnectError> {
    let client = redis::Client::open(url).map_err(|e| RedisConnectError::Url(e.to_string()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(0)
        .set_max_delay(200);
    ConnectionManager::new_with_config(client, config)
        .await
        .map(RedisConnection::Single)
        .map_err(|e| RedisConnectError::Unreachable(e.to_string()))
}

async fn connect_cluster(
    seeds: Vec<&str>,
    timeout: Duration,
) -> Result<RedisConnection, RedisConnectError> {
    if seeds.is_empty() {
        return Err(RedisConnectError::Url(
            "no node of the cluster named".into(),
        ));
    }
    // A few retries: a command sent to a node that no longer holds its slot is redirected
    // (MOVED, ASK), and each redirect counts as one. The callers' deadlines bound the total.
    let client = ClusterClientBuilder::new(seeds)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .build()
        .map_err(|e| RedisConnectError::Url(e.to_string()))?;
    client
        .get_async_connection()
        .await
        .map(RedisConnection::Cluster)
        .map_err(|e| RedisConnectError::Unreachable(e.to_string()))
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn several_urls_without_the_cluster_switch_are_refused_by_name() {
        let refused = connect(
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001",
            false,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(refused.to_string().contains("REDIS_CLUSTER=1"), "{refused}");
    }
}
