//! Fuzzes the SQL classifier: any input must yield statements or an error, never a
//! panic or a hang, with both `standard_conforming_strings` settings; and a cached
//! classification must equal an uncached one.
#![no_main]

use airlock_engine::sql::{Classifier, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for scs in [true, false] {
        let options = ParseOptions { standard_conforming_strings: scs };
        let classifier = Classifier::new();
        let first = classifier.classify(text, options);
        let second = classifier.classify(text, options);
        match (&first, &second) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b) {
                    assert_eq!(x.actions, y.actions, "cache changed the actions of {text:?}");
                }
            }
            (Err(_), Err(_)) => {}
            _ => panic!("cached and uncached disagree on {text:?}"),
        }
    }
});
