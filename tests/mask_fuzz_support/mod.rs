//! The masking fuzzer's world: a database whose masked columns hold distinctive seeded values (fixture.sql), a
//! config file with masks and curated tools on three profiles, pgmcp's own tool dispatch on it (the library path,
//! fast), and a detector that finds a seeded value — or a recognisable piece of one — in any text.
#![allow(dead_code)]

pub mod grammar;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pgmcp::config::file::ConfigFile;
use pgmcp::db::Database;
use pgmcp::mcp::Databases;
use pgmcp::telemetry::audit::CallerIdentity;
use pgmcp::tools::ToolError;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common;

pub const FIXTURE: &str = include_str!("fixture.sql");
pub const DATABASE: &str = "maskfuzz";

/// Every value the fixture puts in a masked column, as PostgreSQL writes it (JSON documents by their tokens).
pub const SEEDED: &[&str] = &[
    "kvzqmrtx.plwhgn@brqfzd.com",
    "+44 7700 913827",
    "7261938.45",
    "1911-07-23",
    "XJQW4829173",
    "wmkrtzvq",
    "48291736",
    "zqvwmpkr",
    "(71.4829163,-33.9172846)",
    "ghtwxpqz@dvlkmrsn.org",
    "+1 415 839 2741",
    "5318027.19",
    "1923-11-04",
    "KPTZ7735190",
    "xqnwtrvk",
    "73519064",
    "pltkrqwz",
    "(12.6617394,58.3307716)",
    "mwqrtzkv@pxlnvq.com",
    "tkzvwqrp.xmlnq@vwhtzk.net",
    "+39 06 4928 7713",
    "6648213.07",
    "1907-02-14",
    "ZRVM6614827",
    "qvtzrkmw",
    "66148273",
    "xzqwvtkp",
    "(64.2281937,-21.9046615)",
    "clr_vqzxkwtm",
    "clr_hpqzrnwd",
    "clr_zmtqvkpx",
    "Qvzkrwtm",
    "Mzwqtvkr",
    "Twzqkvrm",
    "wrtzqvmk",
    "tqxwzpvr",
    "kvrmzwtq",
    "zpwtvqxr",
    "qmvtzrwk",
    "xwrkqtzv",
    "4929 7310 8452 6617",
    "5301 8846 2279 9034",
    "3714 496353 98431",
];

/// Values of unmasked columns: the positive controls must see them.
pub const VISIBLE: &[&str] = &["alice", "bob", "carol", "dan", "erin", "europe", "americas"];

/// Finds seeded values in text, whole or in recognisable pieces: runs of four characters of a seeded token with
/// at least three letters g–z (no hex digit string, hash or English word is made of them), reversed too; the
/// hex encoding of each letter token; runs of seven digits of a seeded value with its separators removed; a date's
/// year and month. Case does not matter.
pub struct Detector {
    fragments: Vec<String>,
}

impl Detector {
    pub fn new() -> Detector {
        let mut fragments = BTreeSet::new();
        for value in SEEDED {
            fragments.extend(fragments_of(value));
        }
        Detector {
            fragments: fragments.into_iter().collect(),
        }
    }

    /// The first seeded piece in `text`, if any.
    pub fn find(&self, text: &str) -> Option<&str> {
        let text = text.to_lowercase();
        self.fragments
            .iter()
            .find(|fragment| text.contains(fragment.as_str()))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.fragments.len()
    }
}

fn fragments_of(value: &str) -> Vec<String> {
    let lower = value.to_lowercase();
    let mut out = vec![lower.clone()];
    let unusual = |c: &char| ('g'..='z').contains(c);
    for token in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
        let chars: Vec<char> = token.chars().collect();
        if chars.iter().filter(|c| c.is_ascii_alphabetic()).count() < 4 {
            continue;
        }
        for window in chars.windows(4) {
            if window.iter().filter(|c| unusual(c)).count() >= 3 {
                out.push(window.iter().collect());
                out.push(window.iter().rev().collect());
            }
        }
        if chars.iter().all(char::is_ascii_alphabetic) {
            out.push(token.bytes().map(|byte| format!("{byte:02x}")).collect());
        }
    }
    let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
    for window in digits.windows(7) {
        out.push(window.iter().collect());
    }
    let bytes = value.as_bytes();
    if bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-' {
        out.push(value[..7].to_string());
    }
    out
}

/// Where the fuzzer's database lives, and the config file that serves it.
pub struct World {
    pub config_path: PathBuf,
    pub config_text: String,
    pub prober_url: String,
    pub owner_url: String,
    _dir: tempfile::TempDir,
}

/// Loads the fixture into the test cluster (once per test binary) and writes the config file.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let cluster = common::cluster();
        cluster
            .psql("postgres", &format!("CREATE DATABASE {DATABASE}"))
            .expect("create the mask fuzz database");
        cluster
            .psql(DATABASE, FIXTURE)
            .expect("load the mask fuzz fixture");
        let prober_url = format!(
            "postgresql://maskprober@{}:{}/{DATABASE}",
            cluster.host(),
            cluster.port()
        );
        let owner_url = cluster.url(DATABASE);
        let config_text = config_text(&prober_url, &owner_url);
        let dir = tempfile::tempdir().expect("a temp dir");
        let config_path = dir.path().join("masks.toml");
        std::fs::write(&config_path, &config_text).expect("write the config");
        World {
            config_path,
            config_text,
            prober_url,
            owner_url,
            _dir: dir,
        }
    })
}

/// The masks every masked profile has: one column of each kind of type, in each mode.
pub const MASKS: &str = r#"
[[profiles.NAME.masks]]
table = "pii.people"
columns = ["email", "phone", "born", "token", "geo", "alias"]
mode = "partial"

[[profiles.NAME.masks]]
table = "pii.people"
columns = ["salary"]
mode = "hash"

[[profiles.NAME.masks]]
table = "pii.people"
columns = ["profile", "clearance", "postal"]
mode = "redact"

[[profiles.NAME.masks]]
table = "pii.people"
columns = ["secret_code"]
mode = "null"

[[profiles.NAME.masks]]
table = "pii.cards"
columns = ["card_number"]
mode = "partial"
"#;

/// Curated tools on the masked `fuzz` profile: plain projections of masked columns, by argument.
pub const CURATED: &str = r#"
[[tools]]
name = "person_card"
description = "One person, contact details included."
profile = "fuzz"
sql = "SELECT id, name, email, phone, salary, born, profile, secret_code, token, geo FROM pii.people WHERE id = $1"
parameters = [{ name = "id", type = "integer", description = "The person's id" }]

[[tools]]
name = "people_in_city"
description = "People of one city."
profile = "fuzz"
sql = "SELECT id, name, email, phone FROM pii.people WHERE city = $1 ORDER BY id LIMIT $2"
parameters = [
  { name = "city", type = "string", description = "City", max_length = 40 },
  { name = "limit", type = "integer", description = "How many", default = 5, minimum = 1, maximum = 50 },
]

[[tools]]
name = "cards_of"
description = "The cards one person holds."
profile = "fuzz"
sql = "SELECT k.region, k.card_number, p.name FROM pii.cards k JOIN pii.people p ON p.id = k.holder_id WHERE k.holder_id = $1"
parameters = [{ name = "holder_id", type = "integer", description = "The holder's id" }]

[[tools]]
name = "vip_contacts"
description = "VIP customers of one tier."
profile = "fuzz"
sql = "SELECT name, tier, email, phone FROM pii.vip WHERE tier = $1"
parameters = [{ name = "tier", type = "string", description = "Tier", enum = ["gold", "platinum"] }]
"#;

/// Three profiles: `fuzz` (a role that may read the tables, with masks), `owner` (a superuser, with masks) and
/// `clear` (the first role without masks: the detector's own control).
fn config_text(prober_url: &str, owner_url: &str) -> String {
    let profile = |name: &str, url: &str, masked: bool| {
        format!(
            "[profiles.{name}]\nurl = \"{url}\"\nstatement_timeout = \"5s\"\npool_max = 3\n\
             allow_volatile_functions = [\"pii.email_of\", \"pii.people_rows\"]\n{}\n",
            if masked {
                MASKS.replace("NAME", name)
            } else {
                String::new()
            }
        )
    };
    format!(
        "default_profile = \"fuzz\"\n\n{}{}{}{CURATED}",
        profile("fuzz", prober_url, true),
        profile("owner", owner_url, true),
        profile("clear", prober_url, false)
    )
}

/// pgmcp's tool dispatch for the fuzzer's config file, built as `pgmcp serve --config` builds it.
pub async fn library() -> Databases {
    library_for(&world().config_path).await
}

/// pgmcp's tool dispatch for another config file.
pub async fn library_for(config_path: &std::path::Path) -> Databases {
    let sources = pgmcp::config::ConfigSources {
        config_path: Some(config_path.to_path_buf()),
        env: HashMap::new(),
        ..Default::default()
    };
    let profiles = pgmcp::config::resolve(&sources).expect("the fuzz config resolves");
    let list: Vec<Arc<Database>> = profiles
        .into_iter()
        .map(|profile| Arc::new(Database::new(profile).expect("a pool")))
        .collect();
    let file = ConfigFile::load(config_path).expect("the fuzz config loads");
    let names: Vec<String> = (file.profiles_in_order().into_iter())
        .map(|(name, _)| name)
        .collect();
    let curated =
        pgmcp::tools::curated::load(&file.tools, &names, &list, None).expect("curated tools load");
    let databases = Databases::new(list).with_curated(curated);
    pgmcp::tools::curated::verify_at_start(&databases)
        .await
        .expect("curated tools verify");
    databases
}

/// What a call came back with, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Answered(String),
    /// Refused by the guard; `masked` when the reason is a masked column.
    Refused {
        masked: bool,
        text: String,
    },
    /// Any other error (PostgreSQL's, an argument, …).
    Failed(String),
    TimedOut,
}

impl Reply {
    pub fn text(&self) -> &str {
        match self {
            Reply::Answered(text) | Reply::Refused { text, .. } | Reply::Failed(text) => text,
            Reply::TimedOut => "",
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Answered(_) => "answered",
            Reply::Refused { masked: true, .. } => "refused (masked column)",
            Reply::Refused { masked: false, .. } => "refused (other reason)",
            Reply::Failed(_) => "failed",
            Reply::TimedOut => "timed out",
        }
    }

    pub fn answered(&self) -> bool {
        matches!(self, Reply::Answered(_))
    }
}

/// The error as the MCP client receives it (its structured form, every field) and as it reads in a log.
fn error_text(error: &ToolError) -> String {
    format!(
        "{error} {}",
        serde_json::to_string(error).unwrap_or_default()
    )
}

pub async fn call(databases: &Databases, tool: &str, arguments: Value) -> Reply {
    let Value::Object(arguments) = arguments else {
        panic!("tool arguments are an object")
    };
    let cancel = CancellationToken::new();
    let call = pgmcp::tools::dispatch::call_tool(
        databases,
        tool,
        arguments,
        &cancel,
        None,
        &CallerIdentity::Local,
    );
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Err(_) => Reply::TimedOut,
        Ok(Ok(answer)) => Reply::Answered(answer.text),
        Ok(Err(error @ ToolError::Rejected { .. })) => Reply::Refused {
            masked: error.to_string().contains("is masked"),
            text: error_text(&error),
        },
        Ok(Err(error)) => Reply::Failed(error_text(&error)),
    }
}

/// The masked values of an answer's column, checked: each is null, `[masked]`, a hash, or a partial mask with its
/// stars. Returns how many were not null, or why the column is not masked.
pub fn masked_column_values(answer: &str, column: &str) -> Result<usize, String> {
    let value: Value = serde_json::from_str(answer).map_err(|e| format!("not JSON: {e}"))?;
    let columns = value["columns"]
        .as_array()
        .ok_or("no columns in the answer")?;
    let Some(index) = columns.iter().position(|c| c["name"] == column) else {
        return Err(format!("no column {column}"));
    };
    let mut shown = 0;
    for row in value["rows"].as_array().ok_or("no rows in the answer")? {
        match &row[index] {
            Value::Null => {}
            Value::String(text)
                if text == "[masked]" || text.starts_with("h:") || text.contains("***") =>
            {
                shown += 1
            }
            other => return Err(format!("{column} holds {other}, which is not masked")),
        }
    }
    Ok(shown)
}

/// Counts by label, printed at the end of a run.
#[derive(Default)]
pub struct Tally {
    pub counts: BTreeMap<String, usize>,
}

impl Tally {
    pub fn add(&mut self, label: impl Into<String>) {
        *self.counts.entry(label.into()).or_default() += 1;
    }

    pub fn get(&self, label: &str) -> usize {
        self.counts.get(label).copied().unwrap_or(0)
    }

    pub fn summary(&self) -> String {
        self.counts
            .iter()
            .map(|(label, count)| format!("  {label}: {count}\n"))
            .collect()
    }
}
