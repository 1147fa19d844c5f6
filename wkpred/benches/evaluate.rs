//! `cargo bench -p wkpred`: evaluation time of compiled and interpreted predicates of 1, 4
//! and 16 terms, and compile time (Cranelift at `speed` and at `none`). Writes
//! `docs/wkpred-bench.json` and `docs/wkpred-bench.md`.
//!
//! Each figure is the median of several timed batches; a batch runs the operation enough
//! times to take about 5 ms.

use std::fmt::Write as _;
use std::hint::black_box;

use wkpred::exec::JitPredicate;
use wkpred::page::offset_in_page;
use wkpred::{OptLevel, Page, Predicate, compile_with, evaluate_pages, parse};

const BATCHES: usize = 9;

/// Median time per call of `f`, in nanoseconds (batches of ~5 ms).
fn time_per_call(f: impl FnMut()) -> f64 {
    xok_codegen::bench::time_per_call(BATCHES, 0.005, f).median
}

/// `n` terms over 4 locations, cycling through widths and operators, all true on the
/// memory `fill` makes; as one clause (every term runs) or as `n / 4` clauses of 4 whose
/// last term is false except in the last clause.
fn predicate(n: usize, clauses_of_four: bool) -> Predicate {
    let forms = [
        "[0]:u64 >= 1000",
        "[1+4]:u32 & 0xff == 3",
        "[2]:u8 != [3]:u8",
        "[1]:i32 < -5",
        "[0+8]:u16 <= 700",
        "[3+8]:u64 == [0+16]:u64",
        "[2+2]:u16 > 9",
        "[0+24]:u32 != 0",
    ];
    let mut text = String::new();
    for i in 0..n {
        if i > 0 {
            text.push_str(if clauses_of_four && i % 4 == 0 { " || " } else { " && " });
        }
        let last_of_clause = clauses_of_four && i % 4 == 3 && i + 1 != n;
        text.push_str(if last_of_clause { "[0+32]:u8 == 1" } else { forms[i % forms.len()] });
    }
    parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn fill(p: &Predicate) -> Vec<Page> {
    let mut pages = vec![Page::default(); p.locations.len()];
    let mut set = |location: u32, offset: u16, width, value| {
        let word = wkpred::Word::new(location, offset, width);
        let Some(page) = pages.get_mut(location as usize) else { return };
        page.write(offset_in_page(p, word), width, value);
    };
    use wkpred::Width::*;
    set(0, 0, W64, 5000);
    set(1, 4, W32, 0x1203);
    set(2, 0, W8, 1);
    set(3, 0, W8, 2);
    set(1, 0, W32, (-9i32) as u32 as u64);
    set(0, 8, W16, 700);
    set(3, 8, W64, 77);
    set(0, 16, W64, 77);
    set(2, 2, W16, 10);
    set(0, 24, W32, 1);
    set(0, 32, W8, 0);
    pages
}

struct Row {
    shape: String,
    terms: usize,
    compiled_ns: f64,
    raw_ns: f64,
    interpreted_ns: f64,
    compile_speed_us: f64,
    compile_none_us: f64,
    code_bytes: usize,
}

fn measure(shape: &str, p: &Predicate) -> Row {
    let pages = fill(p);
    let refs: Vec<&Page> = pages.iter().collect();
    let compiled = compile_with(p, OptLevel::Speed).unwrap();
    let jit = JitPredicate::load(&compiled).unwrap();
    assert!(jit.evaluate(&refs) && evaluate_pages(p, &refs), "`{p}` should be true");
    let compiled_ns = time_per_call(|| {
        black_box(jit.evaluate(black_box(&refs)));
    });
    // What the kernel does: the table is built once at install time.
    let table: Vec<u64> =
        refs.iter().zip(compiled.page_offsets()).map(|(page, &o)| page.0.as_ptr() as u64 + u64::from(o)).collect();
    let raw_ns = time_per_call(|| {
        // SAFETY: `table` points into `pages`, alive and unmodified here, at the offsets the
        // compiled predicate was validated for.
        black_box(unsafe { jit.evaluate_raw(black_box(&table)) });
    });
    let interpreted_ns = time_per_call(|| {
        black_box(evaluate_pages(black_box(p), black_box(&refs)));
    });
    let compile_speed_us = time_per_call(|| {
        black_box(compile_with(black_box(p), OptLevel::Speed).unwrap());
    }) / 1000.0;
    let compile_none_us = time_per_call(|| {
        black_box(compile_with(black_box(p), OptLevel::None).unwrap());
    }) / 1000.0;
    Row {
        shape: shape.to_string(),
        terms: p.term_count(),
        compiled_ns,
        raw_ns,
        interpreted_ns,
        compile_speed_us,
        compile_none_us,
        code_bytes: compiled.code().len(),
    }
}

fn main() {
    let mut rows = Vec::new();
    for n in [1, 4, 16] {
        rows.push(measure("1 clause, all terms run", &predicate(n, false)));
    }
    rows.push(measure("4 clauses of 4, last one true", &predicate(16, true)));
    let max_terms = {
        let text: Vec<String> = (0..16)
            .map(|c| (0..16).map(|t| format!("[{}+{}]:u64 != {}", (c + t) % 32, 8 * t, c)).collect::<Vec<_>>().join(" && "))
            .collect();
        parse(&text.join(" || ")).unwrap()
    };
    // The largest predicate allowed: compile time only matters here.
    let compile_max_speed = time_per_call(|| {
        black_box(compile_with(&max_terms, OptLevel::Speed).unwrap());
    }) / 1000.0;
    let compile_max_none = time_per_call(|| {
        black_box(compile_with(&max_terms, OptLevel::None).unwrap());
    }) / 1000.0;

    let cpu = xok_codegen::bench::cpu_name().unwrap_or_else(|| "unknown CPU".into());

    let mut md = String::new();
    writeln!(md, "# wkpred benchmark\n").unwrap();
    writeln!(md, "Written by `cargo bench -p wkpred` (wkpred/benches/evaluate.rs) on {cpu}. One run; medians of {BATCHES} batches.\n").unwrap();
    writeln!(md, "Evaluation: the predicate is true on the memory given; *compiled (raw)* calls the Cranelift code with an address table built beforehand, as the kernel does (`JitPredicate::evaluate_raw`); *compiled (safe)* goes through `JitPredicate::evaluate`, which builds the table from page references on each call, *interpreted* runs `evaluate_pages` (the reference interpreter reading the same pages). Compile: `compile_with` at each optimization level (validation and Cranelift, not the mapping).\n").unwrap();
    writeln!(md, "| predicate | terms | compiled raw (ns) | compiled safe (ns) | interpreted (ns) | speed-up (raw) | compile speed (µs) | compile none (µs) | code bytes |").unwrap();
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    for r in &rows {
        writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1}× | {:.0} | {:.0} | {} |",
            r.shape,
            r.terms,
            r.raw_ns,
            r.compiled_ns,
            r.interpreted_ns,
            r.interpreted_ns / r.raw_ns,
            r.compile_speed_us,
            r.compile_none_us,
            r.code_bytes
        )
        .unwrap();
    }
    writeln!(md, "\nThe largest allowed predicate (16 clauses × 16 terms, 32 locations) compiles in {compile_max_speed:.0} µs at `speed` and {compile_max_none:.0} µs at `none`.").unwrap();
    print!("{md}");

    let mut json = String::from("{\n  \"cpu\": ");
    write!(json, "{:?},\n  \"rows\": [\n", cpu).unwrap();
    for (i, r) in rows.iter().enumerate() {
        writeln!(
            json,
            "    {{\"predicate\": {:?}, \"terms\": {}, \"compiled_raw_ns\": {:.2}, \"compiled_safe_ns\": {:.2}, \"interpreted_ns\": {:.2}, \"compile_speed_us\": {:.1}, \"compile_none_us\": {:.1}, \"code_bytes\": {}}}{}",
            r.shape,
            r.terms,
            r.raw_ns,
            r.compiled_ns,
            r.interpreted_ns,
            r.compile_speed_us,
            r.compile_none_us,
            r.code_bytes,
            if i + 1 == rows.len() { "" } else { "," }
        )
        .unwrap();
    }
    write!(json, "  ],\n  \"compile_max_speed_us\": {compile_max_speed:.1},\n  \"compile_max_none_us\": {compile_max_none:.1}\n}}\n").unwrap();
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::write(docs.join("wkpred-bench.md"), md).unwrap();
    std::fs::write(docs.join("wkpred-bench.json"), json).unwrap();
}
