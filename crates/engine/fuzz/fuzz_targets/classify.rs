//! Fuzzes the SQL classifier: any input must yield statements or an error, never a
//! panic or a hang, with both `standard_conforming_strings` settings; and a cached
//! classification must equal an uncached one, also through a cache shared by every
//! input of the run (two different statements that wrongly shared a cache key would
//! get each other's actions there).
#![no_main]

use std::sync::LazyLock;

use airlock_engine::sql::{Classifier, ParseOptions};
use libfuzzer_sys::fuzz_target;

static SHARED: LazyLock<Classifier> = LazyLock::new(Classifier::new);

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
        if let (Ok(fresh), Ok(shared)) = (&first, SHARED.classify(text, options)) {
            assert_eq!(fresh.len(), shared.len());
            for (x, y) in fresh.iter().zip(&shared) {
                assert_eq!(x.actions, y.actions, "the shared cache changed the actions of {text:?}");
                assert_eq!(x.kind, y.kind, "the shared cache changed the kind of {text:?}");
            }
        }
    }
});
