#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_fuzz::wire_targets::datagrams(data);
    tandem_fuzz::wire_targets::codec(data);
});
