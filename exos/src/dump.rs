//! What `tcpdump` prints: one line per frame in tcpdump's style ([`describe`]), and the
//! capture expression that chooses frames ([`Expression`]: `tcp`, `udp`, `icmp`, `arp`,
//! `host=A.B.C.D`, `port=N`, all of which must hold). Frames are read through smoltcp's
//! checked views; anything they refuse is shown by its length and type alone.

use alloc::format;
use alloc::string::String;
use smoltcp::wire::{ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

/// A protocol a capture expression may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// TCP over IPv4.
    Tcp,
    /// UDP over IPv4.
    Udp,
    /// ICMP over IPv4.
    Icmp,
    /// ARP.
    Arp,
}

/// Which frames to show: every given term must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expression {
    /// The protocol.
    pub protocol: Option<Protocol>,
    /// An address that is the source or the destination (ARP: sender or target).
    pub host: Option<[u8; 4]>,
    /// A TCP or UDP port that is the source or the destination.
    pub port: Option<u16>,
}

impl Expression {
    /// The expression of `words` (`tcp`, `udp`, `icmp`, `arp`, `host=A.B.C.D`, `port=N`);
    /// the word that is none of these is the error.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Expression, &'a str> {
        let mut expression = Expression::default();
        for word in words {
            match word {
                "tcp" => expression.protocol = Some(Protocol::Tcp),
                "udp" => expression.protocol = Some(Protocol::Udp),
                "icmp" => expression.protocol = Some(Protocol::Icmp),
                "arp" => expression.protocol = Some(Protocol::Arp),
                _ => {
                    if let Some(address) = word.strip_prefix("host=") {
                        expression.host = Some(crate::ipv4::parse(address).ok_or(word)?);
                    } else if let Some(port) = word.strip_prefix("port=") {
                        expression.port = Some(port.parse().map_err(|_| word)?);
                    } else {
                        return Err(word);
                    }
                }
            }
        }
        Ok(expression)
    }

    /// Whether `frame` is one to show.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let facts = Facts::of(frame);
        self.protocol.is_none_or(|protocol| facts.protocol == Some(protocol))
            && self.host.is_none_or(|host| facts.addresses.is_some_and(|(a, b)| a == host || b == host))
            && self.port.is_none_or(|port| facts.ports.is_some_and(|(a, b)| a == port || b == port))
    }
}

/// What an expression looks at in a frame.
struct Facts {
    protocol: Option<Protocol>,
    addresses: Option<([u8; 4], [u8; 4])>,
    ports: Option<(u16, u16)>,
}

impl Facts {
    fn of(frame: &[u8]) -> Facts {
        let mut facts = Facts { protocol: None, addresses: None, ports: None };
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else { return facts };
        match ethernet.ethertype() {
            EthernetProtocol::Arp => {
                facts.protocol = Some(Protocol::Arp);
                if let Ok(arp) = ArpPacket::new_checked(ethernet.payload())
                    && let (Ok(sender), Ok(target)) = (<[u8; 4]>::try_from(arp.source_protocol_addr()), <[u8; 4]>::try_from(arp.target_protocol_addr()))
                {
                    facts.addresses = Some((sender, target));
                }
            }
            EthernetProtocol::Ipv4 => {
                let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else { return facts };
                facts.addresses = Some((ip.src_addr().octets(), ip.dst_addr().octets()));
                let first = ip.frag_offset() == 0;
                match ip.next_header() {
                    IpProtocol::Tcp => {
                        facts.protocol = Some(Protocol::Tcp);
                        facts.ports = TcpPacket::new_checked(ip.payload()).ok().filter(|_| first).map(|tcp| (tcp.src_port(), tcp.dst_port()));
                    }
                    IpProtocol::Udp => {
                        facts.protocol = Some(Protocol::Udp);
                        facts.ports = UdpPacket::new_checked(ip.payload()).ok().filter(|_| first).map(|udp| (udp.src_port(), udp.dst_port()));
                    }
                    IpProtocol::Icmp => facts.protocol = Some(Protocol::Icmp),
                    _ => {}
                }
            }
            _ => {}
        }
        facts
    }
}

fn dotted(address: impl Into<[u8; 4]>) -> crate::ipv4::Dotted {
    crate::ipv4::Dotted(address.into())
}

/// tcpdump's flags field: `S`, `F`, `R`, `P`, `U` in that order, then `.` for ACK.
fn tcp_flags(tcp: &TcpPacket<&[u8]>) -> String {
    let mut flags = String::new();
    for (set, letter) in [(tcp.syn(), 'S'), (tcp.fin(), 'F'), (tcp.rst(), 'R'), (tcp.psh(), 'P'), (tcp.urg(), 'U'), (tcp.ack(), '.')] {
        if set {
            flags.push(letter);
        }
    }
    if flags.is_empty() {
        flags.push_str("none");
    }
    flags
}

/// One line describing `frame`, as tcpdump would (without the timestamp).
pub fn describe(frame: &[u8]) -> String {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else { return format!("truncated frame, length {}", frame.len()) };
    match ethernet.ethertype() {
        EthernetProtocol::Arp => match ArpPacket::new_checked(ethernet.payload()) {
            Ok(arp) => {
                let length = 8 + 2 * (usize::from(arp.hardware_len()) + usize::from(arp.protocol_len()));
                let (Ok(sender), Ok(target)) = (<[u8; 4]>::try_from(arp.source_protocol_addr()), <[u8; 4]>::try_from(arp.target_protocol_addr())) else {
                    return format!("ARP, non-IPv4, length {length}");
                };
                match arp.operation() {
                    ArpOperation::Request => format!("ARP, Request who-has {} tell {}, length {length}", dotted(target), dotted(sender)),
                    ArpOperation::Reply => {
                        let m = arp.source_hardware_addr();
                        let mac = m.iter().map(|b| format!("{b:02x}")).collect::<alloc::vec::Vec<_>>().join(":");
                        format!("ARP, Reply {} is-at {mac}, length {length}", dotted(sender))
                    }
                    _ => format!("ARP, unknown operation, length {length}"),
                }
            }
            Err(_) => format!("ARP, truncated, length {}", ethernet.payload().len()),
        },
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else { return format!("IP, truncated, length {}", ethernet.payload().len()) };
            let (src, dst) = (dotted(ip.src_addr().octets()), dotted(ip.dst_addr().octets()));
            if ip.frag_offset() != 0 {
                return format!("IP {src} > {dst}: fragment at {}, length {}", ip.frag_offset(), ip.payload().len());
            }
            match ip.next_header() {
                IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
                    Ok(tcp) => {
                        let mut line = format!("IP {src}.{} > {dst}.{}: Flags [{}], seq {}", tcp.src_port(), tcp.dst_port(), tcp_flags(&tcp), tcp.seq_number().0 as u32);
                        if tcp.ack() {
                            line.push_str(&format!(", ack {}", tcp.ack_number().0 as u32));
                        }
                        line.push_str(&format!(", win {}, length {}", tcp.window_len(), tcp.payload().len()));
                        line
                    }
                    Err(_) => format!("IP {src} > {dst}: TCP, truncated"),
                },
                IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
                    Ok(udp) => format!("IP {src}.{} > {dst}.{}: UDP, length {}", udp.src_port(), udp.dst_port(), udp.payload().len()),
                    Err(_) => format!("IP {src} > {dst}: UDP, truncated"),
                },
                IpProtocol::Icmp => match Icmpv4Packet::new_checked(ip.payload()) {
                    Ok(icmp) => match icmp.msg_type() {
                        Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply => {
                            let kind = if icmp.msg_type() == Icmpv4Message::EchoRequest { "request" } else { "reply" };
                            format!("IP {src} > {dst}: ICMP echo {kind}, id {}, seq {}, length {}", icmp.echo_ident(), icmp.echo_seq_no(), ip.payload().len())
                        }
                        Icmpv4Message::DstUnreachable => format!("IP {src} > {dst}: ICMP unreachable (code {}), length {}", icmp.msg_code(), ip.payload().len()),
                        other => format!("IP {src} > {dst}: ICMP {other}, length {}", ip.payload().len()),
                    },
                    Err(_) => format!("IP {src} > {dst}: ICMP, truncated"),
                },
                other => format!("IP {src} > {dst}: {other}, length {}", ip.payload().len()),
            }
        }
        other => format!("ethertype {other}, length {}", frame.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcpip::sim::tcp_packet;
    use alloc::vec::Vec;
    use smoltcp::wire::TcpControl;

    fn ethernet(ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::from(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2][..]);
        frame.extend_from_slice(&ethertype);
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn tcp_lines_read_like_tcpdump() {
        let syn = ethernet([8, 0], &tcp_packet(([10, 0, 2, 2], 4000), ([10, 0, 2, 15], 80), TcpControl::Syn, 7, None, b""));
        assert_eq!(describe(&syn), "IP 10.0.2.2.4000 > 10.0.2.15.80: Flags [S], seq 7, win 8000, length 0");
        let data = ethernet([8, 0], &tcp_packet(([10, 0, 2, 15], 80), ([10, 0, 2, 2], 4000), TcpControl::Psh, 9, Some(8), b"hello"));
        assert_eq!(describe(&data), "IP 10.0.2.15.80 > 10.0.2.2.4000: Flags [P.], seq 9, ack 8, win 8000, length 5");
        assert!(Expression::parse(["tcp", "port=80"]).unwrap().matches(&syn));
        assert!(Expression::parse(["host=10.0.2.2"]).unwrap().matches(&data));
        assert!(!Expression::parse(["udp"]).unwrap().matches(&syn));
        assert!(!Expression::parse(["port=81"]).unwrap().matches(&syn));
        assert!(!Expression::parse(["host=10.0.2.3"]).unwrap().matches(&syn));
        assert_eq!(Expression::parse(["tcp", "bogus"]), Err("bogus"));
        assert_eq!(Expression::parse(["port=99999"]), Err("port=99999"));
    }

    #[test]
    fn arp_and_garbage() {
        let request = crate::echo::arp_request([2, 0, 0, 0, 0, 2], [10, 0, 2, 2], [10, 0, 2, 15]);
        assert_eq!(describe(&request), "ARP, Request who-has 10.0.2.15 tell 10.0.2.2, length 28");
        assert!(Expression::parse(["arp", "host=10.0.2.15"]).unwrap().matches(&request));
        assert_eq!(describe(&[1, 2, 3]), "truncated frame, length 3");
        for len in 0..request.len() {
            let _ = describe(&request[..len]);
        }
        assert_eq!(describe(&ethernet([0x86, 0xdd], &[0; 40])), "ethertype IPv6, length 54");
    }
}
