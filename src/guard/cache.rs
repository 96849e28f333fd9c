//! A profile's guard with a memory: agents repeat the same statement text with different bind values, and the
//! verdict depends only on the text and the policy, so each text is parsed once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::masks::MaskMode;
use super::{GuardError, GuardPolicy, Verdict, check};

/// For each output column of a statement, the mask its values get (empty: none).
pub type OutputMasks = Arc<Vec<Option<MaskMode>>>;
use crate::config::AccessMode;

/// Verdicts remembered per access mode. Small: a full table is emptied rather than aged, which keeps the common
/// case (a handful of statement shapes) free of bookkeeping and bounds memory whatever the agents send.
const CAPACITY: usize = 256;
/// Longer statements are checked every time: they are seldom repeated, and a full table of them would hold
/// megabytes of SQL text.
pub const CACHEABLE_SQL_BYTES: usize = 8 * 1024;
/// How long PostgreSQL's resolution of a statement text counts as checked. Within it, the statement runs from the
/// connection's prepared statements without being parsed again; after it, the next call has the server resolve
/// it anew, so a view or function changed by someone else is seen within this time.
pub const CONFIRMATION_TTL: Duration = Duration::from_secs(10);

/// The policies a profile's statements are checked against: read-only calls always get the read-only variant,
/// writes the profile's own.
pub struct CachedGuard {
    read_only: Remembered,
    read_write: Option<Remembered>,
}

struct Remembered {
    policy: GuardPolicy,
    verdicts: Mutex<HashMap<String, Arc<Verdict>>>,
    /// When each text was last checked as PostgreSQL resolved it, and the masks its output columns carry.
    confirmed: Mutex<HashMap<String, (Instant, OutputMasks)>>,
}

impl Remembered {
    fn new(policy: GuardPolicy) -> Remembered {
        Remembered {
            policy,
            verdicts: Mutex::new(HashMap::new()),
            confirmed: Mutex::new(HashMap::new()),
        }
    }
}

impl CachedGuard {
    pub fn new(policy: &GuardPolicy) -> CachedGuard {
        let mut read_only = policy.clone();
        read_only.access_mode = AccessMode::ReadOnly;
        CachedGuard {
            read_only: Remembered::new(read_only),
            read_write: (policy.access_mode == AccessMode::ReadWrite)
                .then(|| Remembered::new(policy.clone())),
        }
    }

    /// The policy statements run under in `mode`; a read-only profile has no read-write policy and answers with
    /// its read-only one.
    pub fn policy(&self, mode: AccessMode) -> &GuardPolicy {
        &self.side(mode).policy
    }

    /// The guard's verdict on `sql` under the policy for `mode`, parsed on the first sight of the text only.
    /// Rejections are not remembered: they are rare, and the error is rebuilt with the same words.
    pub fn check(&self, sql: &str, mode: AccessMode) -> Result<Arc<Verdict>, GuardError> {
        let side = self.side(mode);
        if let Some(verdict) = lock(&side.verdicts).get(sql) {
            return Ok(verdict.clone());
        }
        let verdict = Arc::new(check(sql, &side.policy)?);
        if sql.len() > CACHEABLE_SQL_BYTES {
            return Ok(verdict);
        }
        let mut verdicts = lock(&side.verdicts);
        if verdicts.len() >= CAPACITY {
            verdicts.clear();
        }
        verdicts.insert(sql.to_owned(), verdict.clone());
        Ok(verdict)
    }

    /// The masks of the statement's output columns, when its resolved form passed the checks within
    /// [`CONFIRMATION_TTL`].
    pub fn confirmed(&self, sql: &str, mode: AccessMode) -> Option<OutputMasks> {
        lock(&self.side(mode).confirmed)
            .get(sql)
            .filter(|(at, _)| at.elapsed() < CONFIRMATION_TTL)
            .map(|(_, masks)| masks.clone())
    }

    /// Remembers that the statement's resolved form passed the checks just now, with its output masks.
    pub fn confirm(&self, sql: &str, mode: AccessMode, masks: OutputMasks) {
        if sql.len() > CACHEABLE_SQL_BYTES {
            return;
        }
        let mut confirmed = lock(&self.side(mode).confirmed);
        if confirmed.len() >= CAPACITY {
            confirmed.clear();
        }
        confirmed.insert(sql.to_owned(), (Instant::now(), masks));
    }

    fn side(&self, mode: AccessMode) -> &Remembered {
        match (mode, &self.read_write) {
            (AccessMode::ReadWrite, Some(read_write)) => read_write,
            _ => &self.read_only,
        }
    }
}

/// The map holds only finished verdicts, so a panic elsewhere while it was locked cannot have left it half-made.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::{CAPACITY, CachedGuard};
    use crate::config::AccessMode;
    use crate::guard::{GuardPolicy, StatementClass};

    #[test]
    fn a_remembered_verdict_is_the_one_a_fresh_check_gives() {
        let guard = CachedGuard::new(&GuardPolicy::read_write(false));
        let sql = "SELECT random(), lower(name) FROM t WHERE id = $1";
        let first = guard.check(sql, AccessMode::ReadOnly).expect("accepted");
        let again = guard.check(sql, AccessMode::ReadOnly).expect("accepted");
        assert!(
            std::sync::Arc::ptr_eq(&first, &again),
            "the second check is served from memory"
        );
        let fresh = crate::guard::check(sql, guard.policy(AccessMode::ReadOnly)).expect("accepted");
        assert_eq!(*again, fresh);
    }

    #[test]
    fn modes_are_judged_apart_and_a_read_only_profile_never_writes() {
        let sql = "DELETE FROM t WHERE id = $1";
        let writable = CachedGuard::new(&GuardPolicy::read_write(false));
        assert!(writable.check(sql, AccessMode::ReadOnly).is_err());
        let verdict = writable
            .check(sql, AccessMode::ReadWrite)
            .expect("a write profile writes");
        assert_eq!(verdict.class, StatementClass::Write);
        // Remembering the write verdict must not leak it into the read-only side.
        assert!(writable.check(sql, AccessMode::ReadOnly).is_err());

        let read_only = CachedGuard::new(&GuardPolicy::read_only());
        assert!(read_only.check(sql, AccessMode::ReadWrite).is_err());
        assert_eq!(
            read_only.policy(AccessMode::ReadWrite).access_mode,
            AccessMode::ReadOnly
        );
    }

    #[test]
    fn rejections_keep_their_reason_and_memory_stays_bounded() {
        let guard = CachedGuard::new(&GuardPolicy::read_only());
        let reason = |sql: &str| {
            guard
                .check(sql, AccessMode::ReadOnly)
                .expect_err("rejected")
                .reason
        };
        let fresh = crate::guard::check("SET search_path = x", &GuardPolicy::read_only())
            .expect_err("rejected")
            .reason;
        assert!(
            fresh.starts_with("SET SEARCH_PATH is not allowed"),
            "{fresh}"
        );
        assert_eq!(reason("SET search_path = x"), fresh);
        assert_eq!(
            reason("SET search_path = x"),
            fresh,
            "asked again, same words"
        );
        for i in 0..(CAPACITY * 3) {
            guard
                .check(&format!("SELECT {i}"), AccessMode::ReadOnly)
                .expect("accepted");
        }
        let remembered = super::lock(&guard.read_only.verdicts).len();
        assert!(remembered <= CAPACITY, "{remembered} verdicts kept");

        let long = format!("SELECT 1 /* {} */", "x".repeat(super::CACHEABLE_SQL_BYTES));
        guard.check(&long, AccessMode::ReadOnly).expect("accepted");
        assert!(
            !super::lock(&guard.read_only.verdicts).contains_key(&long),
            "a long statement's text is not kept"
        );
        guard.confirm(&long, AccessMode::ReadOnly, Default::default());
        assert!(guard.confirmed(&long, AccessMode::ReadOnly).is_none());
        for i in 0..(CAPACITY * 3) {
            guard.confirm(
                &format!("SELECT {i}"),
                AccessMode::ReadOnly,
                Default::default(),
            );
        }
        let confirmed = super::lock(&guard.read_only.confirmed).len();
        assert!(confirmed <= CAPACITY, "{confirmed} confirmations kept");
    }

    #[test]
    fn a_confirmation_belongs_to_its_mode_and_expires() {
        let guard = CachedGuard::new(&GuardPolicy::read_write(false));
        let sql = "SELECT 1";
        assert!(guard.confirmed(sql, AccessMode::ReadOnly).is_none());
        let masks: super::OutputMasks = std::sync::Arc::new(vec![None]);
        guard.confirm(sql, AccessMode::ReadOnly, masks.clone());
        assert_eq!(
            guard.confirmed(sql, AccessMode::ReadOnly),
            Some(masks.clone())
        );
        assert!(guard.confirmed(sql, AccessMode::ReadWrite).is_none());
        let past = std::time::Instant::now() - super::CONFIRMATION_TTL;
        super::lock(&guard.read_only.confirmed).insert(sql.to_owned(), (past, masks));
        assert!(
            guard.confirmed(sql, AccessMode::ReadOnly).is_none(),
            "expired"
        );
    }
}
