//! Which statement kinds may run, per access mode. Decided on the typed root node; the tree walk adds what
//! hides deeper (data-modifying CTEs, row locks, INTO, denied functions).

use pg_query::NodeEnum;
use pg_query::protobuf::{self, ExplainStmt, TransactionStmtKind, VariableSetKind};

use super::policy::GuardPolicy;
use super::walk::{TreeFacts, node_type_name, walk};
use super::{GuardError, StatementClass, Verdict};
use crate::config::AccessMode;

const READ_ONLY_ALLOWED: &str =
    "only SELECT, VALUES, TABLE, WITH (read-only), SHOW and EXPLAIN are allowed";

/// What running a query (not a utility statement) would do.
enum Effect {
    Read,
    /// Writes rows or takes row locks; the string names what does it, for messages.
    Writes(String),
    /// SELECT INTO: creates a table.
    CreatesTable,
}

pub(crate) fn classify(statement: &NodeEnum, policy: &GuardPolicy) -> Result<Verdict, GuardError> {
    let read_write = policy.access_mode == AccessMode::ReadWrite;
    match statement {
        NodeEnum::VariableShowStmt(_) => Ok(Verdict::new(StatementClass::Show, Vec::new())),
        NodeEnum::ExplainStmt(explain) => classify_explain(explain, policy),
        NodeEnum::SelectStmt(_) => {
            let (effect, facts) = query_effect(statement, policy)?;
            let class = match effect {
                Effect::Read => StatementClass::Read,
                Effect::Writes(_) if read_write => StatementClass::Write,
                Effect::Writes(what) => return Err(not_allowed(&what, policy)),
                Effect::CreatesTable => ddl_class("SELECT INTO", policy)?,
            };
            Ok(Verdict::new(class, facts.functions))
        }
        _ if dml_kind(statement).is_some() => {
            if !read_write {
                return Err(not_allowed(&describe(statement), policy));
            }
            let (effect, facts) = query_effect(statement, policy)?;
            if let Effect::CreatesTable = effect {
                return Err(GuardError::new(
                    "INTO is not allowed inside a data-modifying statement",
                ));
            }
            Ok(Verdict::new(StatementClass::Write, facts.functions))
        }
        _ if is_schema_ddl(statement) => {
            let class = ddl_class(&describe(statement), policy)?;
            check_extension(statement, policy)?;
            // DDL is trusted as a whole once enabled, but the deny-list still applies to expressions it runs
            // (CREATE TABLE AS, defaults, index expressions), and what it nests is held to the same rules.
            let facts = walk(statement, policy)?;
            if let Some(nested) = facts
                .nested
                .iter()
                .find(|name| !NESTABLE_IN_DDL.contains(name))
            {
                return Err(GuardError::new(format!(
                    "{} inside {} is not allowed: DDL may only nest queries, INSERT/UPDATE/DELETE/MERGE and the \
                     schema elements CREATE TABLE, VIEW, INDEX, SEQUENCE and TRIGGER",
                    words_from_node_name(nested),
                    describe(statement)
                )));
            }
            if facts.into && !matches!(statement, NodeEnum::CreateTableAsStmt(_)) {
                return Err(GuardError::new(format!(
                    "SELECT INTO inside {} is not allowed",
                    describe(statement)
                )));
            }
            Ok(Verdict::new(class, facts.functions))
        }
        _ => Err(not_allowed(&describe(statement), policy)),
    }
}

fn classify_explain(explain: &ExplainStmt, policy: &GuardPolicy) -> Result<Verdict, GuardError> {
    let analyze = explain.options.iter().any(is_analyze_option);
    let explain_word = if analyze {
        "EXPLAIN ANALYZE"
    } else {
        "EXPLAIN"
    };
    let Some(inner) = explain.query.as_ref().and_then(|node| node.node.as_ref()) else {
        return Err(GuardError::new("EXPLAIN without a statement"));
    };
    if !matches!(inner, NodeEnum::SelectStmt(_)) && dml_kind(inner).is_none() {
        return Err(GuardError::new(format!(
            "{explain_word} of {} is not allowed: EXPLAIN may only wrap SELECT, VALUES, TABLE, WITH{}",
            describe(inner),
            if policy.access_mode == AccessMode::ReadWrite {
                ", INSERT, UPDATE, DELETE or MERGE"
            } else {
                ""
            }
        )));
    }
    let (effect, facts) = query_effect(inner, policy)?;
    match effect {
        Effect::Read => {}
        Effect::CreatesTable => {
            return Err(GuardError::new(format!(
                "{explain_word} of SELECT INTO is not allowed: it creates a table"
            )));
        }
        Effect::Writes(what) => match policy.access_mode {
            AccessMode::ReadOnly if analyze => {
                return Err(GuardError::new(format!(
                    "EXPLAIN ANALYZE of {what} is not allowed in read-only mode: ANALYZE executes the statement; {READ_ONLY_ALLOWED}"
                )));
            }
            AccessMode::ReadOnly => {
                return Err(GuardError::new(format!(
                    "EXPLAIN of {what} is not allowed in read-only mode, even without ANALYZE: {READ_ONLY_ALLOWED}"
                )));
            }
            AccessMode::ReadWrite if analyze => {
                return Err(GuardError::new(format!(
                    "EXPLAIN ANALYZE of {what} is not allowed: ANALYZE executes the statement; use EXPLAIN without ANALYZE"
                )));
            }
            AccessMode::ReadWrite => {}
        },
    }
    Ok(Verdict::new(
        StatementClass::Explain { analyze },
        facts.functions,
    ))
}

/// Walks a SELECT or DML root and works out what executing it would do.
fn query_effect(root: &NodeEnum, policy: &GuardPolicy) -> Result<(Effect, TreeFacts), GuardError> {
    let facts = walk(root, policy)?;
    if let Some(nested) = facts.nested_other {
        return Err(GuardError::new(format!(
            "{} is not allowed inside a query",
            words_from_node_name(nested)
        )));
    }
    let effect = if let Some(kind) = dml_kind(root) {
        Effect::Writes(kind.to_string())
    } else if facts.into {
        Effect::CreatesTable
    } else if let Some(nested) = facts.nested_dml {
        Effect::Writes(format!(
            "a data-modifying WITH ({} inside WITH)",
            words_from_node_name(nested)
        ))
    } else if facts.locking {
        Effect::Writes("SELECT ... FOR UPDATE/SHARE (row locking)".to_string())
    } else {
        Effect::Read
    };
    Ok((effect, facts))
}

/// Statements DDL may contain: the query of CREATE TABLE AS / VIEW, rule actions and SQL function bodies (which
/// run with the rights of whoever uses them later, so only what the profile could run itself), and the elements
/// of CREATE SCHEMA. GRANT inside CREATE SCHEMA, NOTIFY in a rule, and anything else are refused.
const NESTABLE_IN_DDL: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
    "ReturnStmt",
    "CreateStmt",
    "ViewStmt",
    "IndexStmt",
    "CreateSeqStmt",
    "CreateTrigStmt",
];

/// Extensions can install untrusted languages and functions owned by a superuser: only those the profile names
/// (`allow_extensions`) may be created, updated or dropped, and extension membership is never changed.
fn check_extension(statement: &NodeEnum, policy: &GuardPolicy) -> Result<(), GuardError> {
    let names: Vec<String> = match statement {
        NodeEnum::CreateExtensionStmt(create) => vec![create.extname.clone()],
        NodeEnum::AlterExtensionStmt(alter) => vec![alter.extname.clone()],
        NodeEnum::AlterExtensionContentsStmt(_) => {
            return Err(GuardError::new(
                "ALTER EXTENSION ... ADD/DROP is not allowed: it changes what an extension owns",
            ));
        }
        NodeEnum::DropStmt(drop)
            if drop.remove_type == protobuf::ObjectType::ObjectExtension as i32 =>
        {
            drop.objects
                .iter()
                .filter_map(|object| match object.node.as_ref() {
                    Some(NodeEnum::String(name)) => Some(name.sval.clone()),
                    _ => None,
                })
                .collect()
        }
        _ => return Ok(()),
    };
    match names
        .iter()
        .find(|name| !policy.allowed_extensions.contains(name))
    {
        None if !names.is_empty() => Ok(()),
        None => Err(GuardError::new(
            "could not tell which extension the statement names",
        )),
        Some(name) => Err(GuardError::new(format!(
            "{} of extension {name} is not allowed: this profile allows {} (allow_extensions)",
            describe(statement),
            if policy.allowed_extensions.is_empty() {
                "no extensions".to_string()
            } else {
                policy.allowed_extensions.join(", ")
            }
        ))),
    }
}

fn ddl_class(what: &str, policy: &GuardPolicy) -> Result<StatementClass, GuardError> {
    match policy.access_mode {
        AccessMode::ReadOnly => Err(not_allowed(what, policy)),
        AccessMode::ReadWrite if policy.allow_ddl => Ok(StatementClass::Ddl),
        AccessMode::ReadWrite => Err(GuardError::new(format!(
            "{what} is DDL, which this profile does not allow (allow_ddl is off): only SELECT, VALUES, TABLE, WITH, INSERT, UPDATE, DELETE, MERGE, SHOW and EXPLAIN are allowed"
        ))),
    }
}

fn not_allowed(what: &str, policy: &GuardPolicy) -> GuardError {
    match policy.access_mode {
        AccessMode::ReadOnly => GuardError::new(format!(
            "{what} is not allowed in read-only mode: {READ_ONLY_ALLOWED}"
        )),
        AccessMode::ReadWrite => GuardError::new(format!(
            "{what} is not allowed: only SELECT, VALUES, TABLE, WITH, INSERT, UPDATE, DELETE, MERGE, SHOW and EXPLAIN{} are allowed, one statement per call",
            if policy.allow_ddl {
                ", and DDL on schema objects"
            } else {
                ""
            }
        )),
    }
}

fn dml_kind(statement: &NodeEnum) -> Option<&'static str> {
    match statement {
        NodeEnum::InsertStmt(_) => Some("INSERT"),
        NodeEnum::UpdateStmt(_) => Some("UPDATE"),
        NodeEnum::DeleteStmt(_) => Some("DELETE"),
        NodeEnum::MergeStmt(_) => Some("MERGE"),
        _ => None,
    }
}

/// Statements that change schema objects inside one database. Roles, databases, tablespaces, privileges,
/// foreign servers and user mappings (credentials), subscriptions, publications, event triggers, languages and
/// ALTER SYSTEM are not here: they reach beyond the schema, so no profile may run them through pgmcp.
fn is_schema_ddl(statement: &NodeEnum) -> bool {
    let object_type = match statement {
        NodeEnum::DropStmt(drop) => Some(drop.remove_type),
        NodeEnum::RenameStmt(rename) => Some(rename.rename_type),
        NodeEnum::AlterOwnerStmt(alter) => Some(alter.object_type),
        NodeEnum::CommentStmt(comment) => Some(comment.objtype),
        NodeEnum::AlterObjectSchemaStmt(alter) => Some(alter.object_type),
        _ => None,
    };
    if object_type.is_some_and(is_beyond_schema) {
        return false;
    }
    matches!(
        statement,
        NodeEnum::CreateStmt(_)
            | NodeEnum::AlterTableStmt(_)
            | NodeEnum::DropStmt(_)
            | NodeEnum::TruncateStmt(_)
            | NodeEnum::CommentStmt(_)
            | NodeEnum::IndexStmt(_)
            | NodeEnum::CreateFunctionStmt(_)
            | NodeEnum::AlterFunctionStmt(_)
            | NodeEnum::ViewStmt(_)
            | NodeEnum::CreateSeqStmt(_)
            | NodeEnum::AlterSeqStmt(_)
            | NodeEnum::CreateSchemaStmt(_)
            | NodeEnum::RenameStmt(_)
            | NodeEnum::CreateTableAsStmt(_)
            | NodeEnum::RefreshMatViewStmt(_)
            | NodeEnum::CreateDomainStmt(_)
            | NodeEnum::AlterDomainStmt(_)
            | NodeEnum::CompositeTypeStmt(_)
            | NodeEnum::CreateEnumStmt(_)
            | NodeEnum::CreateRangeStmt(_)
            | NodeEnum::AlterEnumStmt(_)
            | NodeEnum::AlterTypeStmt(_)
            | NodeEnum::DefineStmt(_)
            | NodeEnum::CreateExtensionStmt(_)
            | NodeEnum::AlterExtensionStmt(_)
            | NodeEnum::AlterExtensionContentsStmt(_)
            | NodeEnum::CreateTrigStmt(_)
            | NodeEnum::CreatePolicyStmt(_)
            | NodeEnum::AlterPolicyStmt(_)
            | NodeEnum::RuleStmt(_)
            | NodeEnum::CreateCastStmt(_)
            | NodeEnum::CreateConversionStmt(_)
            | NodeEnum::CreateOpClassStmt(_)
            | NodeEnum::CreateOpFamilyStmt(_)
            | NodeEnum::AlterOpFamilyStmt(_)
            | NodeEnum::AlterOperatorStmt(_)
            | NodeEnum::AlterObjectSchemaStmt(_)
            | NodeEnum::AlterObjectDependsStmt(_)
            | NodeEnum::AlterOwnerStmt(_)
            | NodeEnum::CreateStatsStmt(_)
            | NodeEnum::AlterStatsStmt(_)
            | NodeEnum::CreateForeignTableStmt(_)
            | NodeEnum::ImportForeignSchemaStmt(_)
            | NodeEnum::AlterCollationStmt(_)
            | NodeEnum::AlterTsdictionaryStmt(_)
            | NodeEnum::AlterTsconfigurationStmt(_)
            | NodeEnum::CreateTransformStmt(_)
    )
}

/// Object kinds whose generic DROP/RENAME/OWNER/COMMENT forms still reach beyond one database's schema.
fn is_beyond_schema(object_type: i32) -> bool {
    use protobuf::ObjectType as Object;
    matches!(
        Object::try_from(object_type),
        Ok(Object::ObjectDatabase
            | Object::ObjectRole
            | Object::ObjectTablespace
            | Object::ObjectForeignServer
            | Object::ObjectFdw
            | Object::ObjectUserMapping
            | Object::ObjectPublication
            | Object::ObjectPublicationNamespace
            | Object::ObjectPublicationRel
            | Object::ObjectSubscription
            | Object::ObjectEventTrigger
            | Object::ObjectLanguage
            | Object::ObjectAccessMethod
            | Object::ObjectParameterAcl
            | Object::ObjectLargeobject)
            | Err(_)
    )
}

/// `OBJECT_FOREIGN_TABLE` → `FOREIGN TABLE`, for messages.
fn object_words(object_type: i32) -> String {
    protobuf::ObjectType::try_from(object_type)
        .map(|object| {
            object
                .as_str_name()
                .trim_start_matches("OBJECT_")
                .replace('_', " ")
        })
        .unwrap_or_else(|_| "object".to_string())
}

/// EXPLAIN's ANALYZE option, treated as on unless its argument is one PostgreSQL reads as false.
fn is_analyze_option(option: &pg_query::Node) -> bool {
    let Some(NodeEnum::DefElem(element)) = option.node.as_ref() else {
        return false;
    };
    if !element.defname.eq_ignore_ascii_case("analyze") {
        return false;
    }
    match element.arg.as_ref().and_then(|arg| arg.node.as_ref()) {
        None => true,
        Some(NodeEnum::Boolean(value)) => value.boolval,
        Some(NodeEnum::Integer(value)) => value.ival != 0,
        Some(NodeEnum::String(value)) => !is_false_word(&value.sval),
        Some(NodeEnum::AConst(constant)) => match constant.val.as_ref() {
            Some(protobuf::a_const::Val::Boolval(value)) => value.boolval,
            Some(protobuf::a_const::Val::Ival(value)) => value.ival != 0,
            Some(protobuf::a_const::Val::Sval(value)) => !is_false_word(&value.sval),
            _ => true,
        },
        Some(_) => true,
    }
}

/// PostgreSQL's parse_bool false spellings: prefixes of "false"/"no", "of(f)", "0".
fn is_false_word(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    !word.is_empty()
        && ("false".starts_with(&word)
            || "no".starts_with(&word)
            || word == "of"
            || word == "off"
            || word == "0")
}

/// The SQL words for a statement, for messages.
pub(crate) fn describe(statement: &NodeEnum) -> String {
    let words = match statement {
        NodeEnum::SelectStmt(select) if select.into_clause.is_some() => "SELECT INTO",
        NodeEnum::TransactionStmt(transaction) => {
            match TransactionStmtKind::try_from(transaction.kind) {
                Ok(TransactionStmtKind::TransStmtBegin) => "BEGIN",
                Ok(TransactionStmtKind::TransStmtStart) => "START TRANSACTION",
                Ok(TransactionStmtKind::TransStmtCommit) => "COMMIT",
                Ok(TransactionStmtKind::TransStmtRollback) => "ROLLBACK",
                Ok(TransactionStmtKind::TransStmtSavepoint) => "SAVEPOINT",
                Ok(TransactionStmtKind::TransStmtRelease) => "RELEASE SAVEPOINT",
                Ok(TransactionStmtKind::TransStmtRollbackTo) => "ROLLBACK TO SAVEPOINT",
                Ok(TransactionStmtKind::TransStmtPrepare) => "PREPARE TRANSACTION",
                Ok(TransactionStmtKind::TransStmtCommitPrepared) => "COMMIT PREPARED",
                Ok(TransactionStmtKind::TransStmtRollbackPrepared) => "ROLLBACK PREPARED",
                _ => "transaction control",
            }
        }
        NodeEnum::VariableSetStmt(set) => {
            return match VariableSetKind::try_from(set.kind) {
                Ok(VariableSetKind::VarReset) => format!("RESET {}", set.name.to_uppercase()),
                Ok(VariableSetKind::VarResetAll) => "RESET ALL".to_string(),
                _ if set.name.is_empty() => "SET".to_string(),
                _ => format!("SET {}", set.name.to_uppercase()),
            };
        }
        NodeEnum::VacuumStmt(vacuum) if vacuum.is_vacuumcmd => "VACUUM",
        NodeEnum::VacuumStmt(_) => "ANALYZE",
        NodeEnum::FetchStmt(fetch) if fetch.ismove => "MOVE",
        NodeEnum::FetchStmt(_) => "FETCH",
        NodeEnum::ClosePortalStmt(_) => "CLOSE",
        NodeEnum::DeclareCursorStmt(_) => "DECLARE CURSOR",
        NodeEnum::GrantStmt(grant) if grant.is_grant => "GRANT",
        NodeEnum::GrantStmt(_) => "REVOKE",
        NodeEnum::GrantRoleStmt(grant) if grant.is_grant => "GRANT",
        NodeEnum::GrantRoleStmt(_) => "REVOKE",
        NodeEnum::CreateTableAsStmt(create) if create.is_select_into => "SELECT INTO",
        NodeEnum::CreateTableAsStmt(create)
            if create.objtype == protobuf::ObjectType::ObjectMatview as i32 =>
        {
            "CREATE MATERIALIZED VIEW"
        }
        NodeEnum::CreateTableAsStmt(_) => "CREATE TABLE AS",
        NodeEnum::RefreshMatViewStmt(_) => "REFRESH MATERIALIZED VIEW",
        NodeEnum::CreateFunctionStmt(create) if create.is_procedure => "CREATE PROCEDURE",
        NodeEnum::CreateFunctionStmt(_) => "CREATE FUNCTION",
        NodeEnum::CreateStmt(_) => "CREATE TABLE",
        NodeEnum::IndexStmt(_) => "CREATE INDEX",
        NodeEnum::ViewStmt(_) => "CREATE VIEW",
        NodeEnum::CreateTrigStmt(_) => "CREATE TRIGGER",
        NodeEnum::RuleStmt(_) => "CREATE RULE",
        NodeEnum::DropStmt(drop) => return format!("DROP {}", object_words(drop.remove_type)),
        NodeEnum::CreateSeqStmt(_) => "CREATE SEQUENCE",
        NodeEnum::CreateSchemaStmt(_) => "CREATE SCHEMA",
        NodeEnum::CreatedbStmt(_) => "CREATE DATABASE",
        NodeEnum::DropdbStmt(_) => "DROP DATABASE",
        NodeEnum::AlterRoleSetStmt(_) => "ALTER ROLE ... SET",
        NodeEnum::RenameStmt(_) => "ALTER ... RENAME",
        NodeEnum::AlterObjectSchemaStmt(_) => "ALTER ... SET SCHEMA",
        NodeEnum::AlterOwnerStmt(_) => "ALTER ... OWNER TO",
        NodeEnum::CommentStmt(_) => "COMMENT ON",
        NodeEnum::SecLabelStmt(_) => "SECURITY LABEL",
        NodeEnum::ConstraintsSetStmt(_) => "SET CONSTRAINTS",
        NodeEnum::CheckPointStmt(_) => "CHECKPOINT",
        NodeEnum::DefineStmt(_) => {
            "CREATE (aggregate, operator, type, collation or text search object)"
        }
        NodeEnum::DoStmt(_) => "DO",
        NodeEnum::CreateExtensionStmt(_) => "CREATE EXTENSION",
        NodeEnum::AlterExtensionStmt(_) => "ALTER EXTENSION",
        other => return words_from_node_name(node_type_name(other)),
    };
    words.to_string()
}

/// `AlterTableStmt` → `ALTER TABLE`: the parse-node names follow the SQL words closely enough for messages.
fn words_from_node_name(name: &str) -> String {
    let name = name.strip_suffix("Stmt").unwrap_or(name);
    let mut words = String::with_capacity(name.len() + 4);
    for (index, character) in name.char_indices() {
        if index > 0 && character.is_ascii_uppercase() {
            words.push(' ');
        }
        words.push(character.to_ascii_uppercase());
    }
    words
}
