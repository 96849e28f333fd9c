//! What the fuzzer composes: dangerous functions × call syntaxes × argument forms × clause positions.
//!
//! Every piece is a text template; `{pid}` (the idle victim's backend pid), `{busy}` (the busy victim's) and
//! `{file}` (the marker file's absolute path) and `{conn}` (a libpq
//! connection string to the fuzz database as the superuser, for dblink) are filled in at run time, because a victim can be replaced
//! between cases. Combinations PostgreSQL cannot parse or resolve are still sent: they must be rejected or fail
//! without effect like any other.

use proptest::prelude::*;
use serde_json::Value;

/// Where the varied first argument's value comes from, and its SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    /// The idle victim's pid (terminating it is visible).
    Victim,
    /// The busy victim's pid (cancelling its sleep is visible).
    Busy,
    /// An advisory lock key.
    Key,
    /// The marker file, absolute path.
    File,
    /// A directory to list.
    Dir,
    /// The test sequence.
    Seq,
    /// A setting's name.
    Setting,
    Channel,
    Oid,
    Int,
    Text,
    Seconds,
    ConnStr,
    /// Query text that signals the idle victim, for functions that run the SQL they are given.
    Query,
}

impl Val {
    /// The value as a literal of its type, and as a JSON parameter.
    fn literal(self) -> (&'static str, &'static str) {
        match self {
            Val::Victim => ("{pid}", "int4"),
            Val::Busy => ("{busy}", "int4"),
            Val::Key => ("4242", "int8"),
            Val::File => ("'{file}'", "text"),
            Val::Dir => ("'.'", "text"),
            Val::Seq => ("'public.fuzz_seq'", "regclass"),
            Val::Setting => ("'work_mem'", "text"),
            Val::Channel => ("'fuzz'", "text"),
            Val::Oid => ("0", "oid"),
            Val::Int => ("7", "int4"),
            Val::Text => ("'on'", "text"),
            Val::Seconds => ("0.001", "float8"),
            Val::ConnStr => ("'{conn}'", "text"),
            Val::Query => (
                "'SELECT pg_catalog.pg_terminate_backend({pid})::text, ''a''::text, ''b''::text'",
                "text",
            ),
        }
    }

    fn typed(self) -> String {
        let (literal, ty) = self.literal();
        format!("{literal}::{ty}")
    }

    fn param(self) -> Value {
        let (literal, _) = self.literal();
        Value::String(literal.trim_matches('\'').to_string())
    }

    /// A column of `public.targets` holding this value, for argument forms that read a table.
    fn target_column(self) -> Option<&'static str> {
        match self {
            Val::Victim => Some("pid"),
            Val::Key => Some("k"),
            _ => None,
        }
    }
}

/// How the statement reaches the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An ordinary function: `first` varies, `rest` are fixed trailing arguments.
    Function {
        first: Option<Val>,
        rest: &'static str,
        /// The first parameter's name, for `f(name => x)`.
        named: Option<&'static str>,
        set_returning: bool,
    },
    /// A function of a `public.targets` row: `t.f`, `f(t)`.
    OfTargetRow,
    /// `public.lock_many(VARIADIC …)`.
    Variadic,
    /// `public.###`, whose function takes an advisory lock.
    Operator,
    /// A cast to `public.locked_key` (CHECK takes a lock) or `public.pair` (cast function takes a lock).
    Cast { to: &'static str },
    /// A `public.places` row; its cast to text takes a lock and signals the victim.
    PlacesRow,
    /// `public.lock_agg`, whose transition function takes a lock.
    Aggregate,
    /// A view whose column calls a volatile function.
    View {
        view: &'static str,
        column: &'static str,
    },
    /// `public.with_default()`, whose default argument takes a lock.
    DefaultArgument,
    /// Values of `public.ordered_key` compared by the type's default operator class, whose comparison function
    /// takes a lock and signals the victim.
    OperatorClass,
    /// A `public.json_key` turned into JSON: its cast to json takes a lock and signals the victim.
    JsonCast,
    /// `NOT (x #=# y)`: the planner puts the negator `#<>#` in its place, whose function takes a lock and signals.
    Negator,
    /// `x #<# column`: the planner estimates it with the commutator `#>#` on the column's histogram.
    Commutator,
    /// A read of a table whose CHECK constraint (of a child) or index expression calls `public.planner_key()`,
    /// which the planner calls while it simplifies them.
    PlannedRelation,
}

#[derive(Debug, Clone, Copy)]
pub struct Danger {
    pub schema: &'static str,
    pub name: &'static str,
    pub shape: Shape,
}

const fn f(
    schema: &'static str,
    name: &'static str,
    first: Option<Val>,
    rest: &'static str,
    named: Option<&'static str>,
) -> Danger {
    Danger {
        schema,
        name,
        shape: Shape::Function {
            first,
            rest,
            named,
            set_returning: false,
        },
    }
}

const fn special(name: &'static str, shape: Shape) -> Danger {
    Danger {
        schema: "public",
        name,
        shape,
    }
}

const PG: &str = "pg_catalog";
const PUBLIC: &str = "public";

pub const DANGERS: &[Danger] = &[
    f(
        PG,
        "pg_terminate_backend",
        Some(Val::Victim),
        "",
        Some("pid"),
    ),
    f(PG, "pg_terminate_backend", Some(Val::Busy), "", Some("pid")),
    f(PG, "pg_cancel_backend", Some(Val::Busy), "", None),
    f(PG, "pg_advisory_lock", Some(Val::Key), "", None),
    f(PG, "pg_try_advisory_lock", Some(Val::Key), "", None),
    f(PG, "pg_advisory_lock_shared", Some(Val::Key), "", None),
    f(PG, "pg_advisory_xact_lock", Some(Val::Key), "", None),
    f(PG, "pg_try_advisory_xact_lock", Some(Val::Key), "", None),
    f(PG, "pg_advisory_lock", Some(Val::Int), ", 1", None),
    f(PG, "lo_create", Some(Val::Oid), "", None),
    f(
        PG,
        "lo_from_bytea",
        Some(Val::Oid),
        r", '\x41'::bytea",
        None,
    ),
    f(PG, "lo_import", Some(Val::File), "", None),
    f(PG, "pg_read_file", Some(Val::File), "", None),
    f(PG, "pg_read_binary_file", Some(Val::File), "", None),
    f(PG, "pg_stat_file", Some(Val::File), "", Some("filename")),
    Danger {
        schema: PG,
        name: "pg_ls_dir",
        shape: Shape::Function {
            first: Some(Val::Dir),
            rest: "",
            named: None,
            set_returning: true,
        },
    },
    f(
        PG,
        "set_config",
        Some(Val::Setting),
        ", '77MB', false",
        None,
    ),
    f(PG, "set_config", Some(Val::Setting), ", '77MB', true", None),
    f(PG, "nextval", Some(Val::Seq), "", None),
    f(PG, "setval", Some(Val::Seq), ", 999", None),
    f(PG, "pg_notify", Some(Val::Channel), ", 'x'", None),
    f(PG, "pg_sleep", Some(Val::Seconds), "", None),
    f(
        PUBLIC,
        "dblink_exec",
        Some(Val::ConnStr),
        ", 'INSERT INTO public.canary (note) VALUES (''dblink'')'",
        None,
    ),
    f(PUBLIC, "dblink_connect", Some(Val::ConnStr), "", None),
    f(PUBLIC, "crosstab2", Some(Val::Query), "", None),
    f(PUBLIC, "write_canary", None, "", None),
    f(PUBLIC, "write_canary_with", Some(Val::Int), "", Some("n")),
    f(PUBLIC, "lock_key", Some(Val::Key), "", Some("k")),
    Danger {
        schema: PUBLIC,
        name: "kill_setof",
        shape: Shape::Function {
            first: Some(Val::Victim),
            rest: "",
            named: Some("p"),
            set_returning: true,
        },
    },
    f(PUBLIC, "stable_writer", Some(Val::Int), "", Some("n")),
    f(PUBLIC, "stable_locker", Some(Val::Key), "", Some("k")),
    f(PUBLIC, "stable_killer", Some(Val::Victim), "", Some("p")),
    f(PUBLIC, "stable_setter", Some(Val::Text), "", Some("v")),
    f(PUBLIC, "stable_listener", Some(Val::Text), "", Some("v")),
    f(
        PUBLIC,
        "stable_remote_writer",
        Some(Val::ConnStr),
        "",
        Some("conn"),
    ),
    special("kill_target", Shape::OfTargetRow),
    special("lock_target", Shape::OfTargetRow),
    special("lock_many", Shape::Variadic),
    special("lock_op", Shape::Operator),
    special(
        "lock_key",
        Shape::Cast {
            to: "public.locked_key",
        },
    ),
    special("pair_of", Shape::Cast { to: "public.pair" }),
    special("places_text", Shape::PlacesRow),
    special("lock_sfunc", Shape::Aggregate),
    special(
        "write_canary",
        Shape::View {
            view: "public.writer_view",
            column: "w",
        },
    ),
    special(
        "lock_key",
        Shape::View {
            view: "public.locker_view",
            column: "l",
        },
    ),
    special("lock_key", Shape::DefaultArgument),
    special("ordered_key_cmp", Shape::OperatorClass),
    special("json_key_json", Shape::JsonCast),
    special("negator_ne", Shape::Negator),
    special("commutator_gt", Shape::Commutator),
    special("planner_key", Shape::PlannedRelation),
];

/// How the call is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Plain,
    SchemaQualified,
    Quoted,
    QuotedQualified,
    Named,
    /// `(x).f`
    FieldSelection,
    /// `((x)).f`
    DoubleParenthesised,
    /// `(ARRAY[x])[1].f`
    ArrayElement,
    /// `(ROW(x)).f1.f`
    RowField,
    /// `(t.c).f` over a FROM item
    ColumnField,
    /// `SELECT … FROM f(x) AS fr`
    FromItem,
    /// `… CROSS JOIN LATERAL f(x) AS fr`
    Lateral,
    /// `ROWS FROM (f(x)) AS fr`
    RowsFrom,
    /// `max(f(x)::text) OVER (…)`
    InWindow,
    /// `TABLESAMPLE BERNOULLI (… f(x) …)`
    Tablesample,
}

pub const SYNTAXES: &[Syntax] = &[
    Syntax::Plain,
    Syntax::SchemaQualified,
    Syntax::Quoted,
    Syntax::QuotedQualified,
    Syntax::Named,
    Syntax::FieldSelection,
    Syntax::DoubleParenthesised,
    Syntax::ArrayElement,
    Syntax::RowField,
    Syntax::ColumnField,
    Syntax::FromItem,
    Syntax::Lateral,
    Syntax::RowsFrom,
    Syntax::InWindow,
    Syntax::Tablesample,
];

/// Where the varied argument's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgForm {
    Literal,
    Typed,
    ScalarSubquery,
    /// `$1` with the value in `params`.
    Parameter,
    /// A column of `(VALUES (x)) v(p)`.
    ValuesColumn,
    /// A column of `public.targets`.
    TableColumn,
    Case,
    Coalesce,
    /// `(SELECT x) ` inside a CTE.
    CteColumn,
}

pub const ARG_FORMS: &[ArgForm] = &[
    ArgForm::Literal,
    ArgForm::Typed,
    ArgForm::ScalarSubquery,
    ArgForm::Parameter,
    ArgForm::ValuesColumn,
    ArgForm::TableColumn,
    ArgForm::Case,
    ArgForm::Coalesce,
    ArgForm::CteColumn,
];

/// Where the call sits in the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    SelectList,
    Where,
    OrderBy,
    GroupBy,
    Having,
    JoinOn,
    Lateral,
    ScalarSubquery,
    Exists,
    In,
    Cte,
    MaterializedCte,
    Values,
    Case,
    Coalesce,
    Nullif,
    Greatest,
    Subscript,
    RowConstructor,
    Cast,
    Operator,
    UnionBranch,
    Limit,
    Offset,
    DistinctOn,
    WindowOrder,
    AggregateFilter,
    ExplainAnalyze,
}

pub const POSITIONS: &[Position] = &[
    Position::SelectList,
    Position::Where,
    Position::OrderBy,
    Position::GroupBy,
    Position::Having,
    Position::JoinOn,
    Position::Lateral,
    Position::ScalarSubquery,
    Position::Exists,
    Position::In,
    Position::Cte,
    Position::MaterializedCte,
    Position::Values,
    Position::Case,
    Position::Coalesce,
    Position::Nullif,
    Position::Greatest,
    Position::Subscript,
    Position::RowConstructor,
    Position::Cast,
    Position::Operator,
    Position::UnionBranch,
    Position::Limit,
    Position::Offset,
    Position::DistinctOn,
    Position::WindowOrder,
    Position::AggregateFilter,
    Position::ExplainAnalyze,
];

/// One generated statement, still with placeholders.
#[derive(Debug, Clone)]
pub struct Case {
    pub danger: Danger,
    pub syntax: Syntax,
    pub arg: ArgForm,
    pub position: Position,
    pub sql: String,
    pub params: Vec<Value>,
}

/// A call as an expression, with the FROM item (or CTE) it needs in scope.
struct Call {
    expr: String,
    from: Option<String>,
    with: Option<String>,
    params: Vec<Value>,
}

/// The varied argument written in `form`: the expression, and what it needs in scope.
fn argument(value: Val, form: ArgForm) -> Option<Call> {
    let (literal, _) = value.literal();
    let typed = value.typed();
    let call = |expr: String| Call {
        expr,
        from: None,
        with: None,
        params: Vec::new(),
    };
    Some(match form {
        ArgForm::Literal => call(literal.to_string()),
        ArgForm::Typed => call(typed),
        ArgForm::ScalarSubquery => call(format!("(SELECT {typed})")),
        ArgForm::Parameter => Call {
            expr: format!("$1::{}", value.literal().1),
            params: vec![value.param()],
            ..call(String::new())
        },
        ArgForm::ValuesColumn => Call {
            from: Some(format!("(VALUES ({typed})) AS v(p)")),
            ..call("v.p".into())
        },
        ArgForm::TableColumn => Call {
            from: Some("public.targets AS tc".into()),
            ..call(format!("tc.{}", value.target_column()?))
        },
        ArgForm::Case => call(format!("CASE WHEN true THEN {typed} END")),
        ArgForm::Coalesce => call(format!("COALESCE({typed}, {typed})")),
        ArgForm::CteColumn => Call {
            with: Some(format!("arg AS (SELECT {typed} AS p)")),
            from: Some("arg".into()),
            ..call("arg.p".into())
        },
    })
}

/// The call of `danger` written in `syntax` with its argument in `form`; `None` when the combination is not
/// SQL at all (a named argument of a function whose parameters have no names, field selection on two
/// arguments).
fn call(danger: &Danger, syntax: Syntax, form: ArgForm) -> Option<Call> {
    let Shape::Function {
        first,
        rest,
        named,
        set_returning,
    } = danger.shape
    else {
        return special_call(danger, syntax, form);
    };
    let (schema, name) = (danger.schema, danger.name);
    let mut arg = match first {
        Some(value) => argument(value, form)?,
        None => argument(Val::Int, ArgForm::Literal).map(|mut c| {
            c.expr.clear();
            c
        })?,
    };
    let x = arg.expr.clone();
    let args = format!("{x}{rest}");
    let single = first.is_some() && rest.is_empty();
    let plain = format!("{name}({args})");
    arg.expr = match syntax {
        Syntax::Plain => plain,
        Syntax::SchemaQualified => format!("{schema}.{name}({args})"),
        Syntax::Quoted => format!("\"{name}\"({args})"),
        Syntax::QuotedQualified => format!("\"{schema}\".\"{name}\"({args})"),
        Syntax::Named => format!("{name}({} => {x}{rest})", named?),
        Syntax::FieldSelection if single => format!("({x}).{name}"),
        Syntax::DoubleParenthesised if single => format!("(({x})).{name}"),
        Syntax::ArrayElement if single => format!("(ARRAY[{x}])[1].{name}"),
        Syntax::RowField if single => format!("(ROW({x})).f1.{name}"),
        Syntax::ColumnField if single => {
            let scope = arg
                .from
                .take()
                .unwrap_or_else(|| "(SELECT 1) AS one".into());
            arg.from = Some(format!(
                "{scope} CROSS JOIN LATERAL (SELECT {x} AS c) AS cf"
            ));
            format!("(cf.c).{name}")
        }
        Syntax::FromItem | Syntax::Lateral | Syntax::RowsFrom => {
            let item = match syntax {
                Syntax::RowsFrom => format!("ROWS FROM ({plain}) AS fr"),
                _ => format!("{plain} AS fr"),
            };
            arg.from = Some(match (arg.from.take(), syntax) {
                (Some(scope), Syntax::FromItem) => format!("{scope}, {item}"),
                (Some(scope), _) => format!("{scope} CROSS JOIN LATERAL {item}"),
                (None, Syntax::Lateral) => format!("(SELECT 1) AS one CROSS JOIN LATERAL {item}"),
                (None, _) => item,
            });
            "fr::text".into()
        }
        Syntax::InWindow if !set_returning => format!("max(({plain})::text) OVER ()"),
        Syntax::Tablesample if arg.from.is_none() && !set_returning => {
            arg.from = Some(format!(
                "public.targets AS ts TABLESAMPLE BERNOULLI ((CASE WHEN ({plain}) IS NULL THEN 100 ELSE 100 END)::float4)"
            ));
            "ts.k".into()
        }
        _ => return None,
    };
    Some(arg)
}

/// Calls PostgreSQL makes on its own behalf: through a row, an operator, a cast, an aggregate, a view, a default.
fn special_call(danger: &Danger, syntax: Syntax, form: ArgForm) -> Option<Call> {
    let key = argument(Val::Key, form)?;
    let k = key.expr.clone();
    let with = |expr: String, from: Option<String>| Call {
        expr,
        from,
        ..argument(Val::Key, form).expect("built above")
    };
    let scoped = |item: &str| match &key.from {
        Some(scope) => format!("{scope}, {item}"),
        None => item.to_string(),
    };
    let name = danger.name;
    Some(match (danger.shape, syntax) {
        (Shape::OfTargetRow, Syntax::Plain) => with(
            format!("public.{name}(t)"),
            Some(scoped("public.targets AS t")),
        ),
        (Shape::OfTargetRow, Syntax::FieldSelection) => {
            with(format!("t.{name}"), Some(scoped("public.targets AS t")))
        }
        (Shape::OfTargetRow, Syntax::DoubleParenthesised) => {
            with(format!("(t).{name}"), Some(scoped("public.targets AS t")))
        }
        (Shape::OfTargetRow, Syntax::SchemaQualified) => with(
            format!("(ROW({{pid}}, {k})::public.targets).{name}"),
            key.from.clone(),
        ),
        (Shape::Variadic, Syntax::Plain) => {
            with(format!("{name}(VARIADIC ARRAY[{k}])"), key.from.clone())
        }
        (Shape::Variadic, Syntax::SchemaQualified) => {
            with(format!("public.{name}({k}, {k})"), key.from.clone())
        }
        (Shape::Operator, Syntax::Plain) => {
            with(format!("(({k})::bigint ### 1::bigint)"), key.from.clone())
        }
        (Shape::Operator, Syntax::SchemaQualified) => with(
            format!("(({k})::bigint OPERATOR(public.###) 1::bigint)"),
            key.from.clone(),
        ),
        (Shape::Cast { to }, Syntax::Plain) => {
            with(format!("(({k})::bigint)::{to}"), key.from.clone())
        }
        (Shape::Cast { to }, Syntax::SchemaQualified) => {
            with(format!("CAST(({k})::bigint AS {to})"), key.from.clone())
        }
        (Shape::Cast { to }, Syntax::ArrayElement) => with(
            format!("(ARRAY[({k})::bigint]::{to}[])[1]"),
            key.from.clone(),
        ),
        (Shape::PlacesRow, Syntax::Plain) => with("pl".into(), Some(scoped("public.places AS pl"))),
        (Shape::PlacesRow, Syntax::SchemaQualified) => {
            with("pl::text".into(), Some(scoped("public.places AS pl")))
        }
        (Shape::PlacesRow, Syntax::RowField) => with(
            "(SELECT pl FROM public.places AS pl LIMIT 1)".into(),
            key.from.clone(),
        ),
        (Shape::Aggregate, Syntax::Plain) => {
            with(format!("public.lock_agg(({k})::bigint)"), key.from.clone())
        }
        (Shape::Aggregate, Syntax::InWindow) => with(
            format!("public.lock_agg(({k})::bigint) OVER ()"),
            key.from.clone(),
        ),
        (Shape::Aggregate, Syntax::Named) => with(
            format!("public.lock_agg(DISTINCT ({k})::bigint)"),
            key.from.clone(),
        ),
        (Shape::View { view, column }, Syntax::Plain) => with(
            format!("vw.{column}"),
            Some(scoped(&format!("{view} AS vw"))),
        ),
        (Shape::View { view, .. }, Syntax::FromItem) => {
            with("vw::text".into(), Some(scoped(&format!("{view} AS vw"))))
        }
        (Shape::DefaultArgument, Syntax::Plain) => {
            with("public.with_default()".into(), key.from.clone())
        }
        (Shape::DefaultArgument, Syntax::SchemaQualified) => {
            with("(SELECT public.with_default())".into(), key.from.clone())
        }
        (Shape::OperatorClass, Syntax::Plain) => with(
            format!(
                "GREATEST(ROW(({k})::bigint)::public.ordered_key, ROW(1::bigint)::public.ordered_key)"
            ),
            key.from.clone(),
        ),
        (Shape::OperatorClass, Syntax::SchemaQualified) => with(
            format!(
                "(ARRAY[ROW(({k})::bigint)::public.ordered_key] < ARRAY[ROW(1::bigint)::public.ordered_key])"
            ),
            key.from.clone(),
        ),
        (Shape::OperatorClass, Syntax::ArrayElement) => with(
            format!(
                "pg_catalog.array_position(ARRAY[ROW(({k})::bigint)::public.ordered_key], ROW(1::bigint)::public.ordered_key)"
            ),
            key.from.clone(),
        ),
        (Shape::JsonCast, Syntax::Plain) => with(
            format!("pg_catalog.to_json((({k})::text)::public.json_key)"),
            key.from.clone(),
        ),
        (Shape::JsonCast, Syntax::SchemaQualified) => with(
            format!("pg_catalog.to_jsonb((({k})::text)::public.json_key)"),
            key.from.clone(),
        ),
        (Shape::JsonCast, Syntax::Named) => with(
            format!("pg_catalog.json_build_object('k', (({k})::text)::public.json_key)"),
            key.from.clone(),
        ),
        (Shape::JsonCast, Syntax::InWindow) => with(
            format!("pg_catalog.json_agg((({k})::text)::public.json_key) OVER ()"),
            key.from.clone(),
        ),
        (Shape::OperatorClass, Syntax::RowField) => with(
            format!(
                "(LEAST(ROW(({k})::bigint)::public.ordered_key, ROW(1::bigint)::public.ordered_key)).k"
            ),
            key.from.clone(),
        ),
        (Shape::Negator, Syntax::Plain) => with(
            format!("(NOT (({k})::bigint #=# 1::bigint))"),
            key.from.clone(),
        ),
        (Shape::Negator, Syntax::SchemaQualified) => with(
            format!("(NOT (({k})::bigint OPERATOR(public.#=#) 1::bigint))"),
            key.from.clone(),
        ),
        (Shape::Commutator, Syntax::Plain) => with(
            format!("(SELECT count(*) FROM public.spread AS sp WHERE ({k})::bigint #<# sp.v)"),
            key.from.clone(),
        ),
        (Shape::Commutator, Syntax::SchemaQualified) => with(
            format!(
                "(SELECT count(*) FROM public.spread AS sp WHERE ({k})::bigint OPERATOR(public.#<#) sp.v)"
            ),
            key.from.clone(),
        ),
        (Shape::PlannedRelation, Syntax::Plain) => with(
            format!(
                "(SELECT count(*) FROM public.planned_parent AS pp WHERE pp.v = ({k})::bigint)"
            ),
            key.from.clone(),
        ),
        (Shape::PlannedRelation, Syntax::FromItem) => {
            with("pi.v".into(), Some(scoped("public.planned_indexed AS pi")))
        }
        _ => return None,
    })
}

/// The statement with the call in `position`.
fn statement(call: &Call, position: Position) -> String {
    let e = &call.expr;
    let s = call.from.as_deref().unwrap_or("(SELECT 1) AS one");
    let nn = format!("(({e}) IS NOT NULL)");
    let text = format!("(({e})::text)");
    let body = match position {
        Position::SelectList => format!("SELECT {e} FROM {s}"),
        Position::Where => format!("SELECT 1 FROM {s} WHERE {nn}"),
        Position::OrderBy => format!("SELECT 1 FROM {s} ORDER BY {text}"),
        Position::GroupBy => format!("SELECT count(*) FROM {s} GROUP BY {text}"),
        Position::Having => format!("SELECT count(*) FROM {s} HAVING count({text}) >= 0"),
        Position::JoinOn => format!("SELECT 1 FROM {s} JOIN (SELECT 1 AS j) AS jo ON {nn}"),
        Position::Lateral => {
            format!("SELECT l.x FROM {s} CROSS JOIN LATERAL (SELECT {e} AS x) AS l")
        }
        Position::ScalarSubquery => format!("SELECT (SELECT {text} FROM {s} LIMIT 1)"),
        Position::Exists => format!("SELECT EXISTS (SELECT {e} FROM {s})"),
        Position::In => format!("SELECT 'x' IN (SELECT {text} FROM {s})"),
        Position::Cte => format!("WITH c AS (SELECT {e} AS x FROM {s}) SELECT * FROM c"),
        Position::MaterializedCte => {
            format!("WITH c AS MATERIALIZED (SELECT {e} AS x FROM {s}) SELECT count(*) FROM c")
        }
        Position::Values => match &call.from {
            None => format!("VALUES ({text}), ('y')"),
            Some(_) => format!("VALUES ((SELECT {text} FROM {s} LIMIT 1))"),
        },
        Position::Case => format!("SELECT CASE WHEN true THEN {text} END FROM {s}"),
        Position::Coalesce => format!("SELECT COALESCE(NULL, {text}) FROM {s}"),
        Position::Nullif => format!("SELECT NULLIF({text}, 'x') FROM {s}"),
        Position::Greatest => format!("SELECT GREATEST({text}, '') FROM {s}"),
        Position::Subscript => {
            format!("SELECT (ARRAY['a', 'b'])[CASE WHEN {nn} THEN 1 ELSE 2 END] FROM {s}")
        }
        Position::RowConstructor => format!("SELECT ROW({e}, 1) FROM {s}"),
        Position::Cast => format!("SELECT {text}::varchar FROM {s}"),
        Position::Operator => format!("SELECT {text} || 'x' FROM {s}"),
        Position::UnionBranch => format!("SELECT 'a' UNION ALL SELECT {text} FROM {s}"),
        Position::Limit => format!("SELECT 1 LIMIT (SELECT count(*) FROM {s} WHERE {nn})"),
        Position::Offset => format!("SELECT 1 OFFSET (SELECT count(*) FROM {s} WHERE {nn}) - 1"),
        Position::DistinctOn => format!("SELECT DISTINCT ON ({text}) 1 FROM {s}"),
        Position::WindowOrder => format!("SELECT row_number() OVER (ORDER BY {text}) FROM {s}"),
        Position::AggregateFilter => format!("SELECT count(*) FILTER (WHERE {nn}) FROM {s}"),
        Position::ExplainAnalyze => format!("EXPLAIN (ANALYZE, COSTS OFF) SELECT {e} FROM {s}"),
    };
    match &call.with {
        None => body,
        Some(cte) if body.starts_with("WITH ") => format!("WITH {cte}, {}", &body[5..]),
        Some(cte) if body.starts_with("EXPLAIN") => {
            body.replacen(" SELECT", &format!(" WITH {cte} SELECT"), 1)
        }
        Some(cte) => format!("WITH {cte} {body}"),
    }
}

/// The case for one choice of each dimension, or `None` when the call cannot be written that way.
pub fn compose(danger: &Danger, syntax: Syntax, arg: ArgForm, position: Position) -> Option<Case> {
    let call = call(danger, syntax, arg)?;
    Some(Case {
        danger: *danger,
        syntax,
        arg,
        position,
        sql: statement(&call, position),
        params: call.params,
    })
}

/// Uniform over the four dimensions; combinations that are not SQL are drawn again.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        0..DANGERS.len(),
        0..SYNTAXES.len(),
        0..ARG_FORMS.len(),
        0..POSITIONS.len(),
    )
        .prop_filter_map("not writable in this syntax", |(d, s, a, p)| {
            compose(&DANGERS[d], SYNTAXES[s], ARG_FORMS[a], POSITIONS[p])
        })
}
