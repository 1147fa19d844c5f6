//! Writes the compiled code of a small filter set to a file, for `objdump -b binary`.
//! `cargo run -p dpf --example dump_code -- /tmp/dpf.bin`

use dpf::{Dpf, Filter, FilterClass, InsertOptions};

fn main() {
    let host = [10, 0, 0, 1];
    let mut dpf = Dpf::new();
    dpf.insert(&Filter::arp(), 1, 1).unwrap();
    let fallback = InsertOptions { class: FilterClass::Fallback, privileged: true };
    dpf.insert_with(&Filter::ipv4(), fallback, 2, 2).unwrap();
    dpf.insert(&Filter::icmp_to(host), 3, 3).unwrap();
    dpf.insert(&Filter::tcp_listen(host, 80), 4, 4).unwrap();
    dpf.insert(&Filter::tcp_connection(host, 80, [10, 0, 0, 2], 999), 4, 5).unwrap();
    if std::env::args().nth(2).is_some() {
        dpf = Dpf::new();
    }
    let code = dpf.compile().unwrap();
    let path = std::env::args().nth(1).unwrap_or_else(|| "dpf.bin".into());
    std::fs::write(&path, &code.bytes).unwrap();
    println!("{} bytes to {path}", code.bytes.len());
}
