//! Column name patterns of masking rules: `password`, `*_token`, `customers.email`,
//! `public.customers.email`. `*` matches any run of characters; matching ignores case.
//!
//! A result column is known by its origin (schema, table and column, from the table OID
//! and column number the server reports, looked up in the target's catalog) and by its
//! label (the name in the result, an alias for instance). A pattern of one part matches
//! the column name of either; a pattern with a table or schema matches only a column
//! whose origin is known and agrees, except that a column of unknown origin (an
//! expression) is matched on its last part alone, which masks more, never less.

/// A column as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnName<'a> {
    /// Schema of the table, when the origin is known.
    pub schema: Option<&'a str>,
    /// Table, when the origin is known.
    pub table: Option<&'a str>,
    /// Column name or result label.
    pub column: &'a str,
}

impl<'a> ColumnName<'a> {
    /// A name with no known table (a label, a JSON key).
    pub fn bare(column: &'a str) -> Self {
        ColumnName {
            schema: None,
            table: None,
            column,
        }
    }

    /// A column of a known table.
    pub fn of(schema: &'a str, table: &'a str, column: &'a str) -> Self {
        ColumnName {
            schema: Some(schema),
            table: Some(table),
            column,
        }
    }
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    schema: Option<String>,
    table: Option<String>,
    column: String,
}

impl ColumnPattern {
    /// Splits `text` at dots (validated by the configuration loader: 1–3 parts).
    pub fn new(text: &str) -> ColumnPattern {
        let parts: Vec<String> = text.split('.').map(str::to_ascii_lowercase).collect();
        match parts.as_slice() {
            [s, t, c] => ColumnPattern {
                schema: Some(s.clone()),
                table: Some(t.clone()),
                column: c.clone(),
            },
            [t, c] => ColumnPattern {
                schema: None,
                table: Some(t.clone()),
                column: c.clone(),
            },
            _ => ColumnPattern {
                schema: None,
                table: None,
                column: text.to_ascii_lowercase(),
            },
        }
    }

    /// Whether `name` is covered.
    pub fn matches(&self, name: &ColumnName<'_>) -> bool {
        if !glob(&self.column, name.column) {
            return false;
        }
        let Some(table) = name.table else {
            // Unknown origin: the column part decides (masks more, never less).
            return true;
        };
        if let Some(t) = &self.table
            && !glob(t, table)
        {
            return false;
        }
        match (&self.schema, name.schema) {
            (Some(s), Some(schema)) => glob(s, schema),
            _ => true,
        }
    }
}

/// `*`-glob match, ASCII case-insensitive. Iterative with one backtrack point, so any
/// pattern runs in O(pattern × text).
fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if t.get(ti).is_some_and(|x| x.eq_ignore_ascii_case(c)) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or(&[]).iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_parts() {
        assert!(glob("password", "Password"));
        assert!(glob("*_token", "refresh_token"));
        assert!(!glob("*_token", "token"));
        assert!(glob("secret_*", "secret_"));
        assert!(glob("*a*b*", "xxaxxbxx"));
        assert!(!glob("*a*b", "xxaxxbxx"));
        let email = ColumnPattern::new("public.customers.email");
        assert!(email.matches(&ColumnName::of("public", "customers", "email")));
        assert!(!email.matches(&ColumnName::of("public", "users", "email")));
        assert!(!email.matches(&ColumnName::of("audit", "customers", "email")));
        // An expression's label: only the column part is known.
        assert!(email.matches(&ColumnName::bare("email")));
        let two = ColumnPattern::new("customers.email");
        assert!(two.matches(&ColumnName::of("sales", "customers", "email")));
        assert!(!two.matches(&ColumnName::of("sales", "customers", "name")));
    }
}
