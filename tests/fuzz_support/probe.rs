//! The invariant: an accepted statement changed no data, no other session, no setting, and left nothing on its
//! connection. Checked from outside (an observer superuser session, the victims) and from inside (every pooled
//! pgmcp session, once its own session check has returned it to the pool).

use std::sync::atomic::Ordering;

use super::{Harness, Role};

/// The state the next call must leave unchanged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Baseline {
    world: World,
    /// Every setting of a pooled pgmcp session, one `name=value` a line, per role.
    settings: std::collections::BTreeMap<Role, String>,
    notifications: usize,
    busy_interrupted: usize,
}

/// What the observer sees.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct World {
    canary: (i64, i64),
    sequence: (i64, bool),
    large_objects: i64,
    advisory_locks: i64,
    /// Client sessions that are none of the test's own nor pgmcp's (dblink connections).
    strangers: i64,
}

const WORLD_SQL: &str = "\
SELECT (SELECT count(*) FROM public.canary), (SELECT coalesce(max(id), 0)::int8 FROM public.canary), \
       (SELECT last_value FROM public.fuzz_seq), (SELECT is_called FROM public.fuzz_seq), \
       (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata), \
       (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory'), \
       (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' \
          AND pid <> pg_catalog.pg_backend_pid() \
          AND coalesce(application_name, '') NOT IN ('fuzz-victim', 'fuzz-busy', 'fuzz-observer', 'pgmcp-fuzz', 'pgmcp'))";

/// What one pooled pgmcp session holds. pgmcp prepares its own statements at the protocol level, so every
/// SQL-level prepared statement is something a call left.
const SESSION_SQL: &str = "\
SELECT (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()), \
       (SELECT count(*) FROM pg_catalog.pg_listening_channels()), \
       (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql), \
       (SELECT count(*) FROM pg_catalog.pg_cursors WHERE name <> ''), \
       (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()), \
       (SELECT string_agg(name || '=' || setting, E'\\n' ORDER BY name) FROM pg_catalog.pg_settings \
          WHERE name NOT LIKE 'plpgsql.%')";

/// The `name=value` lines that differ between two settings listings.
fn changed_settings(before: &str, after: &str) -> String {
    let old: std::collections::BTreeSet<&str> = before.lines().collect();
    let new: std::collections::BTreeSet<&str> = after.lines().collect();
    let gone = old.difference(&new).map(|line| format!("was {line}"));
    let came = new.difference(&old).map(|line| format!("now {line}"));
    gone.chain(came).collect::<Vec<_>>().join(", ")
}

async fn world(harness: &Harness) -> World {
    let row = harness
        .observer
        .query_one(WORLD_SQL, &[])
        .await
        .expect("observe the world");
    World {
        canary: (row.get(0), row.get(1)),
        sequence: (row.get(2), row.get(3)),
        large_objects: row.get(4),
        advisory_locks: row.get(5),
        strangers: row.get(6),
    }
}

pub(super) async fn baseline(harness: &Harness) -> Baseline {
    let mut settings = std::collections::BTreeMap::new();
    for role in [Role::Prober, Role::Superuser] {
        let sessions = harness
            .pooled_sessions(role)
            .await
            .expect("pgmcp's pool answers");
        let row = sessions[0]
            .query_one(SESSION_SQL, &[])
            .await
            .expect("session probe");
        settings.insert(role, row.get(5));
    }
    Baseline {
        world: world(harness).await,
        settings,
        notifications: harness.victim.notifications.load(Ordering::SeqCst),
        busy_interrupted: harness.busy.interrupted.load(Ordering::SeqCst),
    }
}

impl Harness {
    /// Everything the call may have changed, in words; empty when the invariant holds.
    pub async fn check_invariant(&mut self, role: Role) -> Vec<String> {
        let mut violations = Vec::new();
        // The pooled sessions first: holding all of them waits for the session check of the call's own.
        match self.pooled_sessions(role).await {
            None => {
                violations.push("a pgmcp session did not come back to the pool within 10 s".into())
            }
            Some(sessions) => {
                for session in sessions {
                    let row = match session.query_one(SESSION_SQL, &[]).await {
                        Ok(row) => row,
                        Err(error) => {
                            violations.push(format!("a pooled pgmcp session is broken: {error}"));
                            drop(pgmcp::db::session::Object::take(session));
                            continue;
                        }
                    };
                    let mut held = Vec::new();
                    for (index, kind) in [
                        "advisory locks",
                        "LISTEN channels",
                        "prepared statements",
                        "cursors",
                        "temporary relations",
                    ]
                    .iter()
                    .enumerate()
                    {
                        let count: i64 = row.get(index);
                        if count > 0 {
                            held.push(format!("{kind}: {count}"));
                        }
                    }
                    let settings: String = row.get(5);
                    let before = self.baseline.settings.get(&role).map_or("", String::as_str);
                    if settings != before {
                        held.push(format!(
                            "changed settings ({})",
                            changed_settings(before, &settings)
                        ));
                    }
                    if !held.is_empty() {
                        violations.push(format!(
                            "a pooled pgmcp session still holds {}",
                            held.join(", ")
                        ));
                        // Not back into the pool: the next case starts clean.
                        drop(pgmcp::db::session::Object::take(session));
                    }
                }
            }
        }
        // A connection the session check closed releases its locks once its backend has exited, a moment after
        // the client hung up: what is still different after 2 s stayed.
        let before = &self.baseline.world;
        let mut now = world(self).await;
        for _ in 0..100 {
            if now == *before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            now = world(self).await;
        }
        if now.canary != before.canary {
            violations.push(format!(
                "canary table changed: (rows, max id) {:?} -> {:?}",
                before.canary, now.canary
            ));
        }
        if now.sequence != before.sequence {
            violations.push(format!(
                "sequence changed: {:?} -> {:?}",
                before.sequence, now.sequence
            ));
        }
        if now.large_objects != before.large_objects {
            violations.push(format!(
                "large objects: {} -> {}",
                before.large_objects, now.large_objects
            ));
        }
        if now.advisory_locks != before.advisory_locks {
            violations.push(format!(
                "advisory locks held in the cluster: {} -> {}",
                before.advisory_locks, now.advisory_locks
            ));
        }
        if now.strangers != before.strangers {
            violations.push(format!(
                "other client sessions (dblink?): {} -> {}",
                before.strangers, now.strangers
            ));
        }
        let alive: i64 = self
            .observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&self.victim.pid],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if alive != 1 || !self.victim.responds().await {
            violations.push(format!(
                "the victim session (pid {}) was terminated",
                self.victim.pid
            ));
        }
        let notifications = self.victim.notifications.load(Ordering::SeqCst);
        if notifications != self.baseline.notifications {
            violations.push(format!(
                "the victim received {} notification(s)",
                notifications - self.baseline.notifications
            ));
        }
        let interrupted = self.busy.interrupted.load(Ordering::SeqCst);
        if interrupted != self.baseline.busy_interrupted {
            violations.push(format!(
                "the busy victim's statement was cancelled or its session terminated (pid {})",
                self.busy.pid.load(Ordering::SeqCst)
            ));
        }
        violations
    }
}
