//! What a statement's result is made of, for masking: which column names its computed
//! output values are made from, and what a `COPY ... TO STDOUT` sends.
//!
//! The server names the table and column of a plain column in a result (through
//! subqueries and CTEs too), so those are masked by their origin. A computed value
//! (`upper(ssn)`, `password || ''`, a scalar subquery, a branch of a `UNION`, a whole row
//! `t::text`) has no origin: it is masked whole when the names it is made from include a
//! masked column. This walk collects those names from the parse tree.

use serde_json::Value;

use super::{bool_field, name_list, str_field, tagged};

/// The result-relevant facts of one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultShape {
    /// Column names (last part, lower case) that computed output values are made from.
    pub computed_from: Vec<String>,
    /// A computed output value is made from a whole row (`t::text`, `ROW(t.*)`): any
    /// masked column of any table may be in it.
    pub whole_row: bool,
    /// For `COPY ... TO STDOUT`: what each output column is.
    pub copy_out: Option<CopyOut>,
}

/// A `COPY ... TO`: where its columns come from, and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// The columns.
    pub source: CopySource,
    /// `FORMAT csv`.
    pub csv: bool,
    /// `FORMAT binary`.
    pub binary: bool,
    /// `DELIMITER`, if given (else tab for text, comma for CSV).
    pub delimiter: Option<u8>,
    /// `HEADER`: the first row names the columns.
    pub header: bool,
}

/// The columns of a `COPY ... TO STDOUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// `COPY table [(columns)]`: the table, and the columns listed (none: all of them,
    /// in the table's order).
    Table {
        /// Schema, if written.
        schema: Option<String>,
        /// Table name.
        name: String,
        /// Listed columns.
        columns: Vec<String>,
    },
    /// `COPY (query)`: per output column, the column name when it is a plain column,
    /// `None` when computed; `star` when the list has a `*` (the columns are then not
    /// known from the statement).
    Query {
        /// Output columns in order.
        columns: Vec<Option<String>>,
        /// The target list has a `*`.
        star: bool,
        /// The single table of the query's FROM, when it has exactly one (what `*`
        /// expands to).
        table: Option<(Option<String>, String)>,
    },
}

/// JSON-producing functions whose whole-row argument keeps its column names as keys,
/// where key masking applies.
const KEYED_JSON: &[&str] = &[
    "row_to_json",
    "to_json",
    "to_jsonb",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
];

/// Computes the shape of a statement node (`tag`, `body`).
pub fn shape(tag: &str, body: &Value) -> ResultShape {
    let mut s = Shape::default();
    s.relations(body, 0);
    s.visit(tag, body, false, 0);
    let mut out = ResultShape {
        computed_from: s.computed,
        whole_row: s.whole_row,
        copy_out: None,
    };
    if tag == "CopyStmt" && !bool_field(body, "is_from") {
        out.copy_out = Some(copy_out(body));
    }
    out.computed_from.sort();
    out.computed_from.dedup();
    out
}

/// Deepest nesting walked; a deeper tree is treated as made from every column
/// (whole row), which masks more, never less.
const MAX_DEPTH: usize = 2000;

#[derive(Default)]
struct Shape {
    /// Names of relations and aliases in the statement (to tell `t` the row from `t` a
    /// column).
    relations: Vec<String>,
    computed: Vec<String>,
    whole_row: bool,
}

impl Shape {
    fn relations(&mut self, v: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match v {
            Value::Object(o) => {
                // Tables and subqueries, not functions: `generate_series(1, 9) g` makes
                // `g` a column, and a function's output is opaque anyway.
                let alias = || {
                    o.get("alias")
                        .and_then(|a| a.get("aliasname"))
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase)
                };
                if let Some(Value::String(name)) = o.get("relname") {
                    self.relations.push(name.to_ascii_lowercase());
                    self.relations.extend(alias());
                }
                if o.contains_key("subquery") {
                    self.relations.extend(alias());
                }
                if let Some(Value::String(name)) = o.get("ctename") {
                    self.relations.push(name.to_ascii_lowercase());
                }
                for child in o.values() {
                    self.relations(child, depth + 1);
                }
            }
            Value::Array(items) => {
                for i in items {
                    self.relations(i, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// Visits a node; `computed` when inside an output value that is not a plain column.
    fn visit(&mut self, tag: &str, body: &Value, computed: bool, depth: usize) {
        if depth > MAX_DEPTH {
            self.whole_row = true;
            return;
        }
        match tag {
            "SelectStmt" => {
                // A branch of a set operation loses its origin: all of it is computed.
                let set_op = body.get("larg").is_some_and(|l| !l.is_null());
                if let Some(targets) = body.get("target_list").and_then(Value::as_array) {
                    for t in targets {
                        self.target(t, computed, depth + 1);
                    }
                }
                for key in ["larg", "rarg"] {
                    if let Some(branch) = body.get(key).filter(|b| !b.is_null()) {
                        self.visit("SelectStmt", branch, computed || set_op, depth + 1);
                    }
                }
                for (k, child) in body.as_object().into_iter().flatten() {
                    if !matches!(k.as_str(), "target_list" | "larg" | "rarg") {
                        self.any(child, computed, depth + 1);
                    }
                }
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                // `returning_clause.exprs` since PostgreSQL 18, `returning_list` before.
                let returning = body
                    .get("returning_clause")
                    .and_then(|r| r.get("exprs"))
                    .or_else(|| body.get("returning_list"))
                    .and_then(Value::as_array);
                for t in returning.into_iter().flatten() {
                    self.target(t, computed, depth + 1);
                }
                for (k, child) in body.as_object().into_iter().flatten() {
                    if !matches!(k.as_str(), "returning_list" | "returning_clause") {
                        self.any(child, false, depth + 1);
                    }
                }
            }
            "ColumnRef" if computed => self.column_ref(body),
            // `count(email)` reveals how many rows have a value, not the value: it is
            // made of nothing a mask protects. What a FILTER or window reveals through
            // which rows count is inference, which masking cannot stop (docs/masking.md).
            "FuncCall" if reveals_no_value(body) => {}
            _ => self.any(body, computed, depth + 1),
        }
    }

    fn any(&mut self, v: &Value, computed: bool, depth: usize) {
        if depth > MAX_DEPTH {
            self.whole_row = true;
            return;
        }
        if let Some((tag, body)) = tagged(v)
            && tag.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        {
            self.visit(tag, body, computed, depth + 1);
            return;
        }
        match v {
            Value::Object(o) => {
                for child in o.values() {
                    self.any(child, computed, depth + 1);
                }
            }
            Value::Array(items) => {
                for i in items {
                    self.any(i, computed, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// One entry of a target list: a plain column keeps its origin; anything else is
    /// computed.
    fn target(&mut self, t: &Value, computed: bool, depth: usize) {
        let Some(("ResTarget", rt)) = tagged(t) else {
            self.any(t, computed, depth);
            return;
        };
        let Some(val) = rt.get("val").filter(|v| !v.is_null()) else {
            return;
        };
        // `t.*` and `*` expand to plain columns; `t` alone is the whole row, computed.
        let plain = matches!(tagged(val), Some(("ColumnRef", _))) && !self.names_relation(val);
        if let Some(("FuncCall", call)) = tagged(val)
            && keyed_json(call)
        {
            // `row_to_json(t)` as the output value itself: keyed JSON, masked by key. Only
            // here: `to_jsonb(t) ->> 'password'` takes a value out of it.
            for (k, child) in call.as_object().into_iter().flatten() {
                if k != "args" {
                    self.any(child, true, depth + 1);
                }
            }
            for arg in call
                .get("args")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !self.is_whole_row(arg) {
                    self.any(arg, true, depth + 1);
                }
            }
            return;
        }
        self.any(val, computed || !plain, depth + 1);
    }

    fn column_ref(&mut self, body: &Value) {
        let fields = body.get("fields").and_then(Value::as_array);
        let mut names = Vec::new();
        let mut star = false;
        for f in fields.into_iter().flatten() {
            match tagged(f) {
                Some(("String", s)) => names.push(str_field(s, "sval").to_ascii_lowercase()),
                Some(("AStar", _)) => star = true,
                _ => {}
            }
        }
        if star {
            self.whole_row = true;
            return;
        }
        if let [single] = names.as_slice()
            && self.relations.contains(single)
        {
            // `t` alone where t names a relation: possibly the whole row.
            self.whole_row = true;
        }
        if let Some(last) = names.pop() {
            self.computed.push(last);
        }
    }

    /// `t`, `t.*` or `*`: a whole row.
    fn is_whole_row(&self, v: &Value) -> bool {
        column_fields(v)
            .iter()
            .any(|f| matches!(tagged(f), Some(("AStar", _))))
            || self.names_relation(v)
    }

    /// `t` alone, where `t` names a relation of the statement.
    fn names_relation(&self, v: &Value) -> bool {
        match column_fields(v).as_slice() {
            [only] => {
                matches!(tagged(only), Some(("String", s)) if self.relations.contains(&str_field(s, "sval").to_ascii_lowercase()))
            }
            _ => false,
        }
    }
}

/// Whether a FuncCall body calls a keyed JSON function.
/// Aggregates whose result says nothing of their arguments' values.
const REVEAL_NO_VALUE: &[&str] = &["count"];

fn reveals_no_value(call: &Value) -> bool {
    let name = name_list(call.get("funcname").unwrap_or(&Value::Null));
    // `count` or `pg_catalog.count`; a function of that name in another schema is the
    // user's and could return anything. (pg_catalog is searched first unless the
    // session's search_path names it later, which needs a user function to matter.)
    let unqualified = match name.as_slice() {
        [n] => n,
        [schema, n] if schema.eq_ignore_ascii_case("pg_catalog") => n,
        _ => return false,
    };
    REVEAL_NO_VALUE.contains(&unqualified.to_ascii_lowercase().as_str())
}

fn keyed_json(call: &Value) -> bool {
    name_list(call.get("funcname").unwrap_or(&Value::Null))
        .last()
        .is_some_and(|n| KEYED_JSON.contains(&n.to_ascii_lowercase().as_str()))
}

/// The name parts of a ColumnRef node (empty for anything else).
fn column_fields(v: &Value) -> Vec<&Value> {
    match tagged(v) {
        Some(("ColumnRef", body)) => body
            .get("fields")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn copy_out(body: &Value) -> CopyOut {
    let mut out = CopyOut {
        source: copy_source(body),
        csv: false,
        binary: false,
        delimiter: None,
        header: false,
    };
    for opt in body
        .get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(("DefElem", def)) = tagged(opt) else {
            continue;
        };
        let arg = def.get("arg").and_then(tagged);
        let text = match arg {
            Some(("String", s)) => str_field(s, "sval").to_ascii_lowercase(),
            Some(("Boolean", b)) => bool_field(b, "boolval").to_string(),
            Some(("Integer", i)) => i
                .get("ival")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
            _ => String::new(),
        };
        match str_field(def, "defname") {
            "format" => {
                out.csv = text == "csv";
                out.binary = text == "binary";
            }
            "delimiter" => {
                out.delimiter = match arg {
                    Some(("String", s)) => str_field(s, "sval").bytes().next(),
                    _ => None,
                }
            }
            "header" => out.header = !matches!(text.as_str(), "false" | "off" | "0"),
            _ => {}
        }
    }
    out
}

fn copy_source(body: &Value) -> CopySource {
    if let Some(rel) = body.get("relation").filter(|r| !r.is_null()) {
        let schema = str_field(rel, "schemaname");
        let columns = body
            .get("attlist")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| match tagged(n) {
                Some(("String", s)) => Some(str_field(s, "sval").to_owned()),
                _ => None,
            })
            .collect();
        return CopySource::Table {
            schema: (!schema.is_empty()).then(|| schema.to_owned()),
            name: str_field(rel, "relname").to_owned(),
            columns,
        };
    }
    let query = body.get("query").and_then(tagged);
    let mut columns = Vec::new();
    let mut star = false;
    let mut table = None;
    if let Some(("SelectStmt", sel)) = query {
        for t in sel
            .get("target_list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let val = tagged(t).and_then(|(_, rt)| rt.get("val"));
            match val.and_then(tagged) {
                Some(("ColumnRef", cr)) => {
                    let fields = cr.get("fields").and_then(Value::as_array);
                    let mut name = None;
                    for f in fields.into_iter().flatten() {
                        match tagged(f) {
                            Some(("AStar", _)) => star = true,
                            Some(("String", s)) => name = Some(str_field(s, "sval").to_owned()),
                            _ => {}
                        }
                    }
                    if !star {
                        columns.push(name);
                    }
                }
                _ => columns.push(None),
            }
        }
        if let Some([from]) = sel
            .get("from_clause")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            && let Some(("RangeVar", rv)) = tagged(from)
        {
            let schema = str_field(rv, "schemaname");
            table = Some((
                (!schema.is_empty()).then(|| schema.to_owned()),
                str_field(rv, "relname").to_owned(),
            ));
        }
    } else {
        star = true;
    }
    CopySource::Query {
        columns,
        star,
        table,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ParseOptions, classify_uncached};
    use super::*;

    fn of(sql: &str) -> ResultShape {
        let mut st = classify_uncached(sql, ParseOptions::default()).unwrap();
        st.remove(0).result
    }

    fn from(sql: &str) -> Vec<String> {
        of(sql).computed_from
    }

    #[test]
    fn plain_columns_keep_their_origin_and_are_not_computed() {
        for sql in [
            "select password, email as e from customers",
            "select * from customers",
            "select c.* from customers c",
            "select x.p from (select password as p from customers) x",
            "with x as (select password as p from customers) select p from x",
            "select id from customers where password = 'x'",
            "select g from generate_series(1, 3) g",
        ] {
            let s = of(sql);
            assert!(s.computed_from.is_empty(), "{sql}: {s:?}");
            assert!(!s.whole_row, "{sql}");
        }
    }

    #[test]
    fn count_reveals_no_value_but_a_function_of_that_name_elsewhere_might() {
        for sql in [
            "select count(email) from customers",
            "select count(distinct ssn), pg_catalog.count(card) from customers",
            "select name, count(email) over (partition by name) from customers",
        ] {
            assert!(from(sql).is_empty(), "{sql}: {:?}", from(sql));
        }
        assert_eq!(
            from("select myschema.count(email) from customers"),
            ["email"]
        );
        assert_eq!(
            from("select count(email), max(email) from customers"),
            ["email"]
        );
    }

    #[test]
    fn computed_values_name_what_they_are_made_of() {
        assert_eq!(from("select upper(password) from customers"), ["password"]);
        assert_eq!(
            from("select c.password || '' from customers c"),
            ["password"]
        );
        assert_eq!(
            from("select (select ssn from customers limit 1)"),
            ["ssn"],
            "a scalar subquery's plain column is computed for the outer result"
        );
        assert_eq!(
            from("select password from customers union all select 'x'"),
            ["password"],
            "set operation branches lose their origin"
        );
        assert_eq!(
            from("update customers set name = 'x' returning upper(ssn), id"),
            ["ssn"]
        );
        assert_eq!(
            from("select json_build_object('k', password) from customers"),
            ["password"]
        );
        assert_eq!(
            from("select to_jsonb(c) ->> 'password' from customers c"),
            ["c"]
        );
    }

    #[test]
    fn whole_rows_are_seen_except_as_keyed_json_output() {
        assert!(of("select c::text from customers c").whole_row);
        assert!(of("select c from customers c").whole_row);
        assert!(of("select row(c.*)::text from customers c").whole_row);
        assert!(of("select to_jsonb(c) ->> 'password' from customers c").whole_row);
        assert!(!of("select row_to_json(c) from customers c").whole_row);
        assert!(!of("select jsonb_agg(c order by id) from customers c").whole_row);
    }

    #[test]
    fn copy_to_reports_its_columns_and_format() {
        let s = of(
            "copy customers (password, name) to stdout with (format csv, header, delimiter '|')",
        );
        let c = s.copy_out.unwrap();
        assert_eq!(
            c.source,
            CopySource::Table {
                schema: None,
                name: "customers".into(),
                columns: vec!["password".into(), "name".into()],
            }
        );
        assert!(c.csv && c.header && !c.binary);
        assert_eq!(c.delimiter, Some(b'|'));
        let s = of("copy (select id, upper(email) from public.customers) to stdout");
        assert_eq!(
            s.copy_out.unwrap().source,
            CopySource::Query {
                columns: vec![Some("id".into()), None],
                star: false,
                table: Some((Some("public".into()), "customers".into())),
            }
        );
        assert_eq!(s.computed_from, ["email"]);
        let s = of("copy (select * from customers) to stdout (format binary)");
        let c = s.copy_out.unwrap();
        assert!(c.binary);
        assert!(matches!(c.source, CopySource::Query { star: true, .. }));
        assert!(of("copy customers from stdin").copy_out.is_none());
    }
}
