//! Fuzz target: build a filter set from the input (binary atoms or text), compile it, and
//! check compiled == interpreted == linear on frames taken from the rest of the input,
//! including every truncation. Hostile filters and frames must never panic.
#![no_main]

use dpf::exec::JitCode;
use dpf::{Atom, AtomKey, Base, Dpf, Filter, FilterClass, FilterId, InsertOptions, Width};
use libfuzzer_sys::fuzz_target;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    fn word(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([self.byte()?, self.byte()?, self.byte()?, self.byte()?]))
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn filter(input: &mut Input) -> Option<Filter> {
    let head = input.byte()?;
    if head & 0x80 != 0 {
        // Text form: the next (head & 0x7f) bytes.
        let text = input.take(usize::from(head & 0x7f));
        return std::str::from_utf8(text).ok()?.parse().ok();
    }
    let mut atoms = Vec::new();
    for _ in 0..(head % 8) {
        let shape = input.byte()?;
        let base = if shape & 1 == 0 { Base::Frame } else { Base::Ipv4Payload };
        let width = [Width::W1, Width::W2, Width::W4, Width::W2][usize::from(shape >> 1 & 3)];
        let offset = u16::from(input.byte()?) % 80;
        let mask = if shape & 0x08 != 0 { width.full_mask() } else { input.word()? };
        let value = input.word()?;
        atoms.push(Atom { key: AtomKey { base, offset, width, mask }, value });
    }
    Filter::new(&atoms).ok()
}

fn check(code: &JitCode, dpf: &Dpf, frame: &[u8]) {
    let interpreted = dpf.classify_interpreted(frame);
    assert_eq!(dpf.resolve(&code.run_code(dpf, frame)), Some(interpreted));
    assert_eq!(code.classify(dpf, frame), Some(interpreted));
    assert_eq!(dpf.classify_linear(frame), interpreted);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut dpf = Dpf::with_seed(0x5eed);
    let count = input.byte().unwrap_or(0) % 16;
    let mut ids = Vec::new();
    change(&mut input, &mut dpf, &mut ids, count);
    let code = JitCode::load(&dpf.compile().expect("compiles")).expect("maps");
    // Changes after compiling: while the generation holds, the old code must stay right
    // (connections, table entries and their owner records are data).
    let count = input.byte().unwrap_or(0) % 4;
    change(&mut input, &mut dpf, &mut ids, count);
    let code = if dpf.generation() == code.generation() { code } else { JitCode::load(&dpf.compile().expect("compiles")).expect("maps") };
    while !input.0.is_empty() {
        let len = usize::from(input.byte().unwrap_or(0));
        let frame = input.take(len).to_vec();
        for cut in 0..=frame.len() {
            check(&code, &dpf, &frame[..cut]);
        }
    }
});

/// Up to `count` inserts, each maybe followed by the delete of the newest filter.
fn change(input: &mut Input, dpf: &mut Dpf, ids: &mut Vec<(FilterId, u32)>, count: u8) {
    for _ in 0..count {
        let Some(options) = input.byte() else { break };
        let Some(f) = filter(input) else { continue };
        let class = match options % 8 {
            0 => FilterClass::Copy,
            1 => FilterClass::Fallback,
            _ => FilterClass::Exclusive,
        };
        let principal = u32::from(options >> 4 & 3);
        if let Ok(ins) = dpf.insert_with(&f, InsertOptions { class, privileged: true }, principal, 0) {
            ids.push((ins.id, principal));
        }
        if options & 0x40 != 0
            && let Some((id, p)) = ids.pop()
        {
            assert_eq!(dpf.delete(id, p), Ok(true));
        }
    }
}
