//! The benches' stated targets: each is printed `ok` or `MISSED`, and `make bench` exits
//! non-zero when any was missed, so a missed target never reads as met.

use std::sync::atomic::{AtomicUsize, Ordering};

static MISSED: AtomicUsize = AtomicUsize::new(0);

/// `ok`, or `MISSED` (counted).
pub fn met(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        MISSED.fetch_add(1, Ordering::SeqCst);
        "MISSED"
    }
}

/// Call last: exits 1 when a stated target was missed.
pub fn fail_if_missed() {
    let missed = MISSED.load(Ordering::SeqCst);
    if missed > 0 {
        eprintln!("{missed} stated target(s) MISSED (see above)");
        std::process::exit(1);
    }
}
