//! Captures in the classic pcap format (microsecond timestamps, Ethernet link type), which
//! `tshark -r` and Wireshark read, carried over the console as lines of base64 (the only way
//! out of the guest a program has): `tcpdump` prints the file header and then one line per
//! frame, each `LINE_PREFIX` + base64; concatenating the decoded lines gives the file
//! (`xok-tools pcap`, `xok_tools::pcap::from_console`). Timestamps are the kernel's receive
//! times, counted from boot (the machine has no wall clock).

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine;

/// What starts a console line that carries pcap bytes.
pub const LINE_PREFIX: &str = "pcap ";
/// The longest frame captured whole.
pub const SNAPLEN: u32 = 65535;
/// pcap's link type for Ethernet.
const LINKTYPE_ETHERNET: u32 = 1;

/// The file header: magic (microsecond timestamps), version 2.4, UTC, snap length, Ethernet.
pub fn file_header() -> [u8; 24] {
    let mut header = [0u8; 24];
    header[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header[4..6].copy_from_slice(&2u16.to_le_bytes());
    header[6..8].copy_from_slice(&4u16.to_le_bytes());
    header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    header
}

/// One record: the frame's receive time, its original length and the bytes captured.
pub fn record(timestamp_ns: u64, original_len: usize, captured: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(16 + captured.len());
    let micros = timestamp_ns / 1000;
    record.extend_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
    record.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
    record.extend_from_slice(&(captured.len() as u32).to_le_bytes());
    record.extend_from_slice(&(original_len as u32).to_le_bytes());
    record.extend_from_slice(captured);
    record
}

/// The console line carrying `bytes` (with its newline).
pub fn line(bytes: &[u8]) -> String {
    let mut line = String::from(LINE_PREFIX);
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut line);
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_have_pcaps_layout() {
        let header = file_header();
        assert_eq!(&header[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(header[20], 1);
        let record = record(3_500_000_123, 60, &[7; 42]);
        assert_eq!(&record[..4], &3u32.to_le_bytes(), "seconds");
        assert_eq!(&record[4..8], &500_000u32.to_le_bytes(), "microseconds");
        assert_eq!(&record[8..16], &[42, 0, 0, 0, 60, 0, 0, 0]);
        assert_eq!(record.len(), 16 + 42);
        let line = line(&[0xff, 0, 1]);
        assert_eq!(line, "pcap /wAB\n");
    }
}
