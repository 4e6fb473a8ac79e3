//! Statements PostgreSQL's grammar rejects, answered as the server answers them.
//!
//! Airlock never forwards a statement it could not parse (fail closed), but the client
//! should see exactly the error the server would have sent: its message, its SQLSTATE
//! (42601, or another class for the grammar's other errors), its `Position` (psql's
//! `LINE 1:` and caret), and the transaction state it leaves (an error inside a block
//! aborts it). The target's own grammar is the best source of all of that, whatever its
//! version, and it can be asked without any risk of running the statement: in place of
//! the statement Airlock sends its text followed by `\n;` and a refusal marker (a bare
//! word, itself a syntax error). PostgreSQL raw-parses a whole query string before it
//! runs any of it (simple Query), and a Parse message runs nothing; so the server fails
//! either at the statement's own error, whose answer reaches the client unchanged, or at
//! the marker, which the relay swaps for the answer made here from libpg_query's message.
//! Either way raw parsing fails: nothing of the text is analysed, locked or executed.
//!
//! Two cases are answered here without asking, because the appended suffix would change
//! the server's words: a syntax error at the end of the input (the server would name the
//! `;` instead), and an unterminated literal or comment (the server quotes everything up
//! to the end of the input, which would include the marker).

use airlock_engine::sql::SqlError;

use crate::reply::Reply;

/// How a statement the grammar rejected is refused.
#[derive(Debug, Clone)]
pub struct SyntaxAnswer {
    /// The answer when the server's own error cannot be used (or when it accepts the
    /// text after all, being of another version): libpg_query's message as the server
    /// words it.
    pub reply: Reply,
    /// Whether to send the text ahead of the marker so that the server answers itself.
    pub ask_server: bool,
}

/// The answer for `text` that failed to classify with `error`, if it is a grammar error.
pub fn answer(text: &str, error: &SqlError) -> Option<SyntaxAnswer> {
    match error {
        SqlError::Syntax(message) => {
            let position = local_position(text, message);
            Some(SyntaxAnswer {
                reply: syntax_error(message.clone(), position),
                ask_server: position.is_none(),
            })
        }
        // The statement itself parses: the server would report the body's error only as
        // the block starts to run, so there is nothing to ask it.
        SqlError::DoBody(message) => Some(SyntaxAnswer {
            reply: syntax_error(message.clone(), None),
            ask_server: false,
        }),
        SqlError::Nul | SqlError::TooDeep | SqlError::Internal(_) => None,
    }
}

/// What the server is sent in place of a refused statement: `text`, a line break (a
/// trailing `--` comment ends there) and `marker`.
pub fn probe(text: &str, marker: &str) -> String {
    let mut probe = String::with_capacity(text.len() + marker.len() + 2);
    probe.push_str(text);
    probe.push_str("\n;");
    probe.push_str(marker);
    probe
}

fn syntax_error(message: String, position: Option<usize>) -> Reply {
    Reply {
        severity: "ERROR",
        code: "42601",
        message,
        detail: None,
        hint: None,
        position,
    }
}

/// The server's `Position` for the errors answered here (see the module comment), or
/// `None` for the ones the server is asked about. Like the server, it counts characters,
/// from 1; the end of the input is one past the last character.
fn local_position(text: &str, message: &str) -> Option<usize> {
    if message.ends_with(" at end of input") {
        return Some(text.chars().count() + 1);
    }
    if !message.starts_with("unterminated ") {
        return None;
    }
    // `unterminated quoted string at or near "'abc"`: the quoted part runs from where the
    // literal starts to the end of the input.
    let near = message
        .split_once(" at or near \"")
        .and_then(|(_, rest)| rest.strip_suffix('"'))?;
    let start = text.strip_suffix(near)?;
    Some(start.chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_engine::sql::{Classifier, ParseOptions};

    fn classify_error(text: &str) -> SqlError {
        Classifier::new()
            .classify(text, ParseOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{text:?} parsed"))
    }

    #[test]
    fn an_error_inside_the_text_is_asked_of_the_server() {
        let text = "SELECT 1 FORM t";
        let a = answer(text, &classify_error(text)).unwrap();
        assert!(a.ask_server);
        assert_eq!(a.reply.code, "42601");
        assert_eq!(a.reply.message, "syntax error at or near \"t\"");
        assert_eq!(a.reply.position, None);
    }

    #[test]
    fn an_error_at_the_end_is_answered_with_the_servers_position() {
        let text = "SELECT 1 +  ";
        let a = answer(text, &classify_error(text)).unwrap();
        assert!(!a.ask_server);
        assert_eq!(a.reply.message, "syntax error at end of input");
        assert_eq!(a.reply.position, Some(13));
        // Characters, not bytes.
        let text = "SELECT 'é', (";
        let a = answer(text, &classify_error(text)).unwrap();
        assert_eq!(a.reply.position, Some(14));
    }

    #[test]
    fn an_unterminated_literal_points_at_its_start() {
        for (text, position) in [
            ("SELECT 'ab\ncd", 8),
            ("SELECT ü, $$body", 11),
            ("SELECT 1 /* open", 10),
            ("SELECT \"ident", 8),
        ] {
            let a = answer(text, &classify_error(text)).unwrap();
            assert!(a.reply.message.starts_with("unterminated "), "{a:?}");
            assert!(!a.ask_server, "{text:?}");
            assert_eq!(a.reply.position, Some(position), "{text:?}");
        }
    }

    #[test]
    fn other_failures_are_airlocks_own() {
        assert!(answer("x", &SqlError::Nul).is_none());
        assert!(answer("x", &SqlError::TooDeep).is_none());
        let a = answer("DO $$ BEGIN garbage; END $$", &SqlError::DoBody("m".into())).unwrap();
        assert!(!a.ask_server);
    }

    #[test]
    fn the_probe_ends_comments_before_the_marker() {
        assert_eq!(probe("SELECT 1 -- c", "m"), "SELECT 1 -- c\n;m");
    }
}
