//! The one writing connection: a thread that commits jobs in groups, each in its own savepoint.

use super::*;

/// One operation waiting for the writer: it runs, then hears whether its group committed.
pub(super) trait Job: Send {
    fn run(&mut self, conn: &Connection);
    fn failed(&self) -> bool;
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

pub(super) struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(conn));
        }
    }

    fn failed(&self) -> bool {
        !matches!(self.result, Some(Ok(_)))
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match (committed, self.result) {
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(e), _) => Err(StoreError::Writer(format!("group commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Writer("operation never ran".into())),
        };
        // The caller may have gone away (its request was cancelled); the write stands.
        let _ = self.reply.send(result);
    }
}

#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    pub(super) fn start(path: std::path::PathBuf) -> Self {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>(4096);
        std::thread::Builder::new()
            .name("hub-sqlite-writer".into())
            .spawn(move || writer_thread(&path, queue))
            .map_err(|e| tracing::error!(error = %e, "cannot start the sqlite writer"))
            .ok();
        Self { jobs }
    }

    /// Runs `work` on the writer, inside a savepoint of the next group commit.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Writer("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Writer("the writer stopped before answering".into()))?
    }
}

pub(super) fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(super) fn writer_thread(path: &Path, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut conn = match open_writer(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open the sqlite writer");
            while let Some(job) = queue.blocking_recv() {
                job.finish(Err(format!("cannot open {}: {e}", path.display())));
            }
            return;
        }
    };
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_group(&mut conn, &mut group);
        if let Err(e) = &committed {
            tracing::error!(error = %e, operations = group.len(), "sqlite group commit failed");
        }
        for job in group {
            job.finish(committed.clone());
        }
    }
}

pub(super) fn commit_group(
    conn: &mut Connection,
    group: &mut [Box<dyn Job>],
) -> Result<(), String> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    for job in group.iter_mut() {
        let savepoint = tx.savepoint().map_err(|e| e.to_string())?;
        job.run(&savepoint);
        if job.failed() {
            // Dropping an uncommitted savepoint rolls it back: the failed operation leaves nothing.
            drop(savepoint);
            // Some errors (disk full, I/O) make SQLite roll back the whole transaction itself;
            // going on would run the rest outside it. Stop: the whole group has failed.
            if tx.is_autocommit() {
                return Err("the transaction was rolled back by the engine".into());
            }
        } else {
            savepoint.commit().map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Writes, run on the writer thread.

/// Runs `operation` once per idempotency key: the claim and the write share one savepoint, and
/// the single writer serialises twins, so the second finds the first's outcome.
pub(super) fn run_idempotent<T, F>(
    conn: &Connection,
    claim: Option<&IdempotencyClaim>,
    operation: F,
) -> Result<Idempotent<T>, StoreError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(&Connection, Option<&str>) -> Result<T, StoreError>,
{
    let Some(claim) = claim else {
        return Ok(Idempotent::Fresh(operation(conn, None)?));
    };
    let claimed = conn
        .prepare_cached(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (scope, key) DO NOTHING",
        )?
        .execute(params![claim.scope, claim.key, claim.fingerprint, timestamp(Utc::now())])?
        == 1;
    if !claimed {
        let (fingerprint, outcome): (String, Option<String>) = conn
            .prepare_cached(
                "SELECT fingerprint, outcome FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
            )?
            .query_row(params![claim.scope, claim.key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        let outcome: Option<Value> = outcome.as_deref().map(serde_json::from_str).transpose()?;
        return replay(claim, &fingerprint, outcome);
    }
    let outcome = operation(conn, Some(&claim.key))?;
    conn.prepare_cached("UPDATE idempotency_keys SET outcome = ?3 WHERE scope = ?1 AND key = ?2")?
        .execute(params![
            claim.scope,
            claim.key,
            serde_json::to_string(&outcome)?
        ])?;
    Ok(Idempotent::Fresh(outcome))
}
