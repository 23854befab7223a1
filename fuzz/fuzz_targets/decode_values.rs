//! Fuzzes the values-push decoder with arbitrary bodies, as the hub receives them from the
//! network, and applies what decodes to a base: errors are fine, panics and allocations past
//! the cap are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fleetgate_shared::decode_values(data, 1 << 20);
    // Also reach the payload parser behind a valid header and zstd frame.
    let mut framed = fleetgate_shared::VALUES_MAGIC.to_vec();
    framed.push(fleetgate_shared::VALUES_VERSION);
    framed.extend(zstd::stream::encode_all(data, 1).unwrap_or_default());
    if let Ok(push) = fleetgate_shared::decode_values(&framed, 1 << 20) {
        let base: Vec<f64> = (0..push.samples).map(|i| i as f64 * 0.5).collect();
        if let Ok(values) = push.apply(&base) {
            // Whatever applies must encode and apply to the same values again.
            let again = fleetgate_shared::encode_values(&push.header, &base, &values);
            let back = fleetgate_shared::decode_values(&again, 64 << 20)
                .and_then(|p| p.apply(&base))
                .expect("re-decode");
            let bits = |v: &[f64]| -> Vec<u64> {
                v.iter()
                    .map(|x| if x.is_nan() { f64::NAN } else { *x }.to_bits())
                    .collect()
            };
            assert_eq!(bits(&back), bits(&values));
        }
        let _ = push.apply(&[]);
    }
});
