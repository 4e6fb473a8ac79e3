//! W3C Trace Context: finding an agent's `traceparent` so that its events can be joined
//! to the agent run that caused them.

/// The first well-formed W3C `traceparent` in `text` (version `00`: 32 hex digits of
/// trace id and 16 of parent id, neither all zeros, and 2 of flags), lowercased; `None`
/// if there is none. `text` is a header value, or a PostgreSQL `application_name` or
/// `options` where a client put one (`traceparent=00-…`).
pub fn find_traceparent(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '=' | '"' | '\''))
        .find(|word| is_traceparent(word))
        .map(str::to_ascii_lowercase)
}

fn is_traceparent(word: &str) -> bool {
    let parts: Vec<&str> = word.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if *version == "00" && hex(trace, 32) && !zero(trace) && hex(parent, 16) && !zero(parent) && hex(flags, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_well_formed_traceparent_anywhere_in_a_value() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(find_traceparent(tp).as_deref(), Some(tp));
        assert_eq!(
            find_traceparent(&format!("crew-run traceparent={}", tp.to_uppercase())).as_deref(),
            Some(tp)
        );
        assert_eq!(
            find_traceparent(&format!("-c traceparent={tp}")).as_deref(),
            Some(tp)
        );
        for bad in [
            "",
            "psql",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(find_traceparent(bad), None, "{bad}");
        }
    }
}
