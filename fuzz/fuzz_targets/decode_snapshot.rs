//! Fuzzes the snapshot decoder with arbitrary bodies, as the hub receives them from the network:
//! it must return an error or a snapshot, never panic, never allocate past the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fleetgate_shared::decode(data, 1 << 20);
    // Also reach the zstd/postcard layers behind a valid header.
    let mut framed = fleetgate_shared::MAGIC.to_vec();
    framed.push(fleetgate_shared::VERSION);
    framed.extend_from_slice(data);
    if let Ok(snapshot) = fleetgate_shared::decode(&framed, 1 << 20) {
        // Whatever decodes must encode and decode to the same thing.
        let again = fleetgate_shared::encode(&snapshot);
        let back = fleetgate_shared::decode(&again, 64 << 20).expect("re-decode");
        assert_eq!(format!("{back:?}"), format!("{snapshot:?}"));
    }
    let _ = fleetgate_shared::decompress_capped(
        fleetgate_shared::ContentEncoding::Gzip,
        data,
        1 << 20,
    );
});
