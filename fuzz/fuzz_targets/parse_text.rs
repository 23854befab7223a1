//! Fuzzes the Prometheus text parser the hub runs on `text/plain` pushes: never panic, and
//! whatever parses must render to text that parses to the same families.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(families) = fleetgate_shared::text::parse_bytes(data) {
        let text = fleetgate_shared::text::render(&families);
        let back = fleetgate_shared::text::parse(&text).expect("rendered text must parse");
        assert_eq!(format!("{back:?}"), format!("{families:?}"));
    }
});
