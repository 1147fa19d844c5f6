//! The host end of a guest capture: `tcpdump pcap` prints the pcap file as console lines
//! (`pcap <base64>`, see `exos::pcap`); these functions turn them back into the file.

use base64::Engine;
use exos::pcap::LINE_PREFIX;

/// The pcap bytes of one console line, if it carries some.
pub fn decode_line(line: &str) -> Option<Vec<u8>> {
    let encoded = line.trim_end_matches(['\r', '\n']).strip_prefix(LINE_PREFIX)?;
    base64::engine::general_purpose::STANDARD.decode(encoded).ok()
}

/// The pcap file carried in a whole console output (empty if it carries none).
pub fn from_console(output: &str) -> Vec<u8> {
    output.lines().filter_map(decode_line).flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_decoded_and_others_skipped() {
        assert_eq!(decode_line("pcap /wAB\n"), Some(vec![0xff, 0, 1]));
        assert_eq!(decode_line("tcpdump: pcap /wAB"), None);
        assert_eq!(decode_line("pcap !!!"), None);
        assert_eq!(from_console("xok: boot\npcap AQI=\nhello\npcap Aw==\n"), vec![1, 2, 3]);
    }
}
