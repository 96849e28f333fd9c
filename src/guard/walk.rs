//! One complete pass over a parse tree.
//!
//! pg_query's own node iterator skips node types it does not care about, and a hand-written visitor over ~270
//! node types would silently miss whatever a future PostgreSQL adds. Every pg_query node derives
//! `serde::Serialize`, so "serializing" the tree into this walker visits every field of every node, by
//! construction. Nothing is written anywhere: the walker only looks at struct names and the function names.

use std::fmt;

use pg_query::NodeEnum;
use serde::ser::{self, Serialize};

use super::policy::GuardPolicy;
use super::{FunctionRef, GuardError};

/// What a walk found below the root statement.
#[derive(Debug, Default)]
pub(crate) struct TreeFacts {
    /// Deduplicated calls that passed the deny-list, in order of first appearance.
    pub functions: Vec<FunctionRef>,
    /// First INSERT/UPDATE/DELETE/MERGE nested under the root (data-modifying CTE), as a parse-node name.
    pub nested_dml: Option<&'static str>,
    /// First nested statement of any other kind except SELECT (never legitimate inside a query).
    pub nested_other: Option<&'static str>,
    /// Every statement nested under the root, SELECT included, by parse-node name.
    pub nested: Vec<&'static str>,
    /// FOR UPDATE / FOR SHARE / FOR NO KEY UPDATE / FOR KEY SHARE anywhere.
    pub locking: bool,
    /// An INTO clause anywhere (SELECT INTO creates a table).
    pub into: bool,
}

/// Walks `root`, rejecting the first call the deny-list names.
pub(crate) fn walk(root: &NodeEnum, policy: &GuardPolicy) -> Result<TreeFacts, GuardError> {
    let mut walker = Walker {
        mode: Mode::Facts(policy),
        facts: TreeFacts::default(),
        statements_seen: 0,
        collecting_name: None,
        depth: 0,
        first_struct: None,
    };
    match root.serialize(&mut walker) {
        Ok(()) => Ok(walker.facts),
        Err(Stop::Denied(error)) => Err(error),
        Err(other) => Err(GuardError::new(format!(
            "could not inspect the statement: {other}"
        ))),
    }
}

/// The parse-node type name of `node` (e.g. `"CreateSeqStmt"`), without walking its children.
pub(crate) fn node_type_name(node: &NodeEnum) -> &'static str {
    let mut walker = Walker {
        mode: Mode::NameOnly,
        facts: TreeFacts::default(),
        statements_seen: 0,
        collecting_name: None,
        depth: 0,
        first_struct: None,
    };
    // Stops with `Stop::NameFound` as soon as the first struct is entered.
    let _ = node.serialize(&mut walker);
    walker.first_struct.unwrap_or("unknown statement")
}

enum Mode<'p> {
    Facts(&'p GuardPolicy),
    NameOnly,
}

struct Walker<'p> {
    mode: Mode<'p>,
    facts: TreeFacts,
    statements_seen: usize,
    /// Some while inside a list of name parts (`FuncCall.funcname`, `ColumnRef.fields`,
    /// `A_Indirection.indirection`): the struct depth of the list's owner, and the String nodes found directly in
    /// the list (not those deeper, such as a string constant inside a subscript).
    collecting_name: Option<(usize, Vec<String>)>,
    /// How many structs enclose the current value.
    depth: usize,
    first_struct: Option<&'static str>,
}

/// How a name in a list of name parts may be a function call.
#[derive(Clone, Copy)]
enum NameList {
    /// `f(...)`, `s.f(...)`: the name of the called function.
    Call,
    /// `t.f`, `t.c.f`: every part after the first may be `f(t)` in PostgreSQL's attribute notation.
    ColumnRef,
    /// `(expr).f`: field selection, which PostgreSQL also reads as `f(expr)`.
    Indirection,
}

const DML_NODES: &[&str] = &["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"];

impl Walker<'_> {
    fn enter_struct(&mut self, name: &'static str) -> Result<(), Stop> {
        if self.first_struct.is_none() {
            self.first_struct = Some(name);
        }
        if matches!(self.mode, Mode::NameOnly) {
            return Err(Stop::NameFound);
        }
        match name {
            "LockingClause" => self.facts.locking = true,
            "IntoClause" => self.facts.into = true,
            "RawStmt" => {}
            _ if name.ends_with("Stmt") => {
                // The first statement node is the root the caller already classified.
                let is_root = self.statements_seen == 0;
                self.statements_seen += 1;
                if !is_root && !self.facts.nested.contains(&name) {
                    self.facts.nested.push(name);
                }
                if !is_root && name != "SelectStmt" {
                    let slot = if DML_NODES.contains(&name) {
                        &mut self.facts.nested_dml
                    } else {
                        &mut self.facts.nested_other
                    };
                    slot.get_or_insert(name);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Names in attribute notation and field selection are columns or fields unless no such column exists, in
    /// which case PostgreSQL calls the function of that name. Without the catalog the guard cannot tell, so a
    /// deny-listed name is refused in either reading; the resolved check sees what PostgreSQL chose.
    fn finish_selected_names(&mut self, parts: Vec<String>, list: NameList) -> Result<(), Stop> {
        let Mode::Facts(policy) = self.mode else {
            return Ok(());
        };
        let skip = match list {
            NameList::ColumnRef => 1,
            _ => 0,
        };
        for name in parts.iter().skip(skip) {
            if policy.denied_entry(None, name).is_some() {
                return Err(Stop::Denied(GuardError::new(format!(
                    "function {name} is not allowed: it can change server or session state, or reach outside the \
                     database (`x.{name}` and `(x).{name}` call {name}(x) when x has no field of that name)"
                ))));
            }
        }
        Ok(())
    }

    fn finish_function_name(&mut self, parts: Vec<String>) -> Result<(), Stop> {
        let Mode::Facts(policy) = self.mode else {
            return Ok(());
        };
        // `catalog.schema.name` parses (PostgreSQL rejects the catalog later); the schema is the part before the name.
        let mut parts = parts.into_iter().rev();
        let Some(name) = parts.next() else {
            return Ok(());
        };
        let schema = parts.next();
        let function = FunctionRef { schema, name };
        if policy
            .denied_entry(function.schema.as_deref(), &function.name)
            .is_some()
        {
            return Err(Stop::Denied(GuardError::new(format!(
                "function {function} is not allowed: it can change server or session state, or reach outside the database"
            ))));
        }
        if !self.facts.functions.contains(&function) {
            self.facts.functions.push(function);
        }
        Ok(())
    }
}

/// Why a walk ended early. Only `Denied` reaches the user; the rest are internal.
#[derive(Debug)]
enum Stop {
    Denied(GuardError),
    NameFound,
    Custom(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Denied(error) => write!(f, "{error}"),
            Stop::NameFound => f.write_str("node name found"),
            Stop::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Stop::Custom(message.to_string())
    }
}

/// A struct being visited; it knows its own name so `FuncCall.funcname` can be recognised.
struct StructWalker<'a, 'p> {
    walker: &'a mut Walker<'p>,
    name: &'static str,
}

impl ser::SerializeStruct for StructWalker<'_, '_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        let list = match (self.name, key) {
            ("FuncCall", "funcname") => NameList::Call,
            ("ColumnRef", "fields") => NameList::ColumnRef,
            ("AIndirection", "indirection") => NameList::Indirection,
            _ => return value.serialize(&mut *self.walker),
        };
        // A list nested in another list's elements (a subscript's expression) is collected on its own.
        let outer = self.walker.collecting_name.take();
        self.walker.collecting_name = Some((self.walker.depth, Vec::new()));
        let visited = value.serialize(&mut *self.walker);
        let parts = self
            .walker
            .collecting_name
            .take()
            .map(|(_, parts)| parts)
            .unwrap_or_default();
        self.walker.collecting_name = outer;
        visited?;
        match list {
            NameList::Call => self.walker.finish_function_name(parts),
            _ => self.walker.finish_selected_names(parts, list),
        }
    }

    fn end(self) -> Result<(), Stop> {
        self.walker.depth -= 1;
        Ok(())
    }
}

impl ser::SerializeStructVariant for StructWalker<'_, '_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }

    fn end(self) -> Result<(), Stop> {
        self.walker.depth -= 1;
        Ok(())
    }
}

macro_rules! ignore_scalars {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, _value: $ty) -> Result<(), Stop> { Ok(()) })*
    };
}

impl<'a, 'p> ser::Serializer for &'a mut Walker<'p> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = StructWalker<'a, 'p>;
    type SerializeStructVariant = StructWalker<'a, 'p>;

    ignore_scalars!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_f32: f32,
        serialize_f64: f64,
        serialize_char: char,
        serialize_bytes: &[u8],
    );

    fn serialize_str(self, value: &str) -> Result<(), Stop> {
        // Directly in the list: the list's owner, then the element's Node wrapper, then its String node.
        if let Some((owner, parts)) = self.collecting_name.as_mut()
            && self.depth == *owner + 2
        {
            parts.push(value.to_owned());
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Stop> {
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Stop> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Stop> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<(), Stop> {
        Ok(())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<StructWalker<'a, 'p>, Stop> {
        self.enter_struct(name)?;
        self.depth += 1;
        Ok(StructWalker { walker: self, name })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<StructWalker<'a, 'p>, Stop> {
        self.enter_struct(name)?;
        self.depth += 1;
        Ok(StructWalker { walker: self, name })
    }
}

macro_rules! visit_elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Walker<'_> {
            type Ok = ();
            type Error = Stop;

            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), Stop> {
                Ok(())
            }
        })*
    };
}

visit_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for &mut Walker<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Stop> {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}
