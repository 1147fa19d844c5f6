//! The web servers -- Cheetah (its own TCP) and the baseline `httpd` (exos sockets) -- and
//! `strayd` and `tcpdump`, against real Linux clients (curl, nc, ab, wrk, tshark) in a network
//! namespace the test creates. Each server gets one boot for the whole HTTP suite (the checks
//! run one after the other on it); the document root is generated: files of 0 B to 10 MB.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xok_tests::{Guest, Netns, image_with_docroot};
use xok_tools::image::Image;

const TCPLOAD: &str = env!("CARGO_BIN_EXE_tcpload");
const SIZES: [usize; 6] = [0, 100, 1_000, 10_000, 100_000, 10_000_000];

/// The bytes of the served file of `size` bytes.
fn body(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn image() -> Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let mut files: Vec<(String, Vec<u8>)> = SIZES.iter().map(|&size| (format!("f{size}.bin"), body(size))).collect();
            files.push(("index.html".into(), b"<!doctype html><title>xok</title><p>served by httpd on xok\n".to_vec()));
            files.push(("docs/style.css".into(), STYLE.to_vec()));
            let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(path, bytes)| (path.as_str(), bytes.clone())).collect();
            image_with_docroot("http", &files)
        })
        .clone()
}

/// A booted server in its own namespace.
struct Server {
    ns: Netns,
    guest: Guest,
    dir: PathBuf,
}

impl Server {
    /// Boots `cmdline` in a new namespace and waits for `program` to serve.
    fn boot(tag: &str, cmdline: &str, program: &str) -> Server {
        let ns = Netns::new(tag).unwrap();
        let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let guest = Guest::boot_image(image(), Some(&ns), cmdline, &args).unwrap();
        guest.wait_for(&format!("{program}: 10.0.2.15 port 80 ready"), Duration::from_secs(30)).unwrap();
        let dir = std::env::temp_dir().join(format!("xok-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Server { ns, guest, dir }
    }

    fn sh(&self, script: &str) -> String {
        self.ns.exec(&["timeout", "120", "sh", "-c", script]).unwrap_or_else(|error| panic!("{error}\nconsole:\n{}", self.guest.output()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const URL: &str = "http://10.0.2.15";
/// The served `docs/style.css`.
const STYLE: &[u8] = b"body { font-family: serif }\n";

fn curl_gets_every_size_byte_for_byte_with_head_and_404(server: &Server) {
    for size in SIZES {
        let out = server.dir.join(format!("got{size}"));
        let written = server.sh(&format!("curl -sS -o {} -w '%{{http_code}} %{{size_download}} %{{content_type}}' {URL}/f{size}.bin", out.display()));
        assert_eq!(written, format!("200 {size} application/octet-stream"), "GET f{size}.bin");
        assert!(std::fs::read(&out).unwrap() == body(size), "f{size}.bin differs");
        let head = server.sh(&format!("curl -sS -I {URL}/f{size}.bin"));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains(&format!("Content-Length: {size}\r\n")), "HEAD f{size}.bin: {head}");
    }
    let index = server.sh(&format!("curl -sS -w ' %{{http_code}} %{{content_type}}' {URL}/"));
    assert!(index.starts_with("<!doctype html>") && index.ends_with(" 200 text/html; charset=utf-8"), "{index}");
    let missing = server.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' {URL}/nothing-here"));
    assert_eq!(missing, "404");
    let climbing = server.sh(&format!("curl -sS --path-as-is -o /dev/null -w '%{{http_code}}' {URL}/../f100.bin"));
    assert_eq!(climbing, "404");
    let body = server.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' -X GET -d x {URL}/"));
    assert_eq!(body, "400", "a GET with a body");
    let post = server.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' -d x {URL}/"));
    assert_eq!(post, "501", "POST");
    let delete = server.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' -X DELETE {URL}/"));
    assert_eq!(delete, "501");
}

fn connections_close_or_stay_as_asked_and_pipelined_requests_are_answered_in_order(server: &Server) {
    let http10 = server.sh(&format!("curl -sS -0 -D - -o /dev/null {URL}/f100.bin"));
    assert!(http10.contains("Connection: close\r\n"), "{http10}");
    // Several URLs on one connection: curl reuses it (one connect in all).
    let reused = server.sh(&format!("curl -sS -o /dev/null -o /dev/null -o /dev/null -w '%{{num_connects}}\\n' {URL}/f100.bin {URL}/f1000.bin {URL}/"));
    assert_eq!(reused.lines().collect::<Vec<_>>(), ["1", "0", "0"], "keep-alive");
    // Two requests in one write: both answers, in order, then the close the second asked for.
    let pipelined = server.sh(&format!(
        "printf 'GET /f100.bin HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nHEAD /docs/style.css HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | nc -w 10 10.0.2.15 80 > {0}/pipelined; wc -c < {0}/pipelined",
        server.dir.display()
    ));
    let bytes = std::fs::read(server.dir.join("pipelined")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let first = text.find("Content-Length: 100\r\n").expect("the first response");
    let second = text.find(&format!("Content-Length: {}\r\n", STYLE.len())).unwrap_or_else(|| panic!("the second response: {text:?}"));
    assert!(first < second, "in order: {text}");
    assert!(text.ends_with("Connection: close\r\n\r\n"), "the HEAD has no body: {text:?} ({pipelined} bytes)");
}

fn bad_clients_are_refused_or_served_and_never_stall_others(server: &Server) {
    // A 64 KB request line: refused (414) within seconds.
    let started = Instant::now();
    let long = server.sh(&format!(
        "head -c 65536 /dev/zero | tr '\\0' a | sed 's|^|GET /|' > {0}/long; printf ' HTTP/1.1\\r\\n\\r\\n' >> {0}/long; nc -w 10 10.0.2.15 80 < {0}/long | head -c 200 || true",
        server.dir.display()
    ));
    assert!(long.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{long:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "refused in {:?}", started.elapsed());
    // A slow client (a byte per 100 ms) and a client that vanishes mid-response, while
    // curl fetches 10 MB beside them.
    let script = format!(
        "{TCPLOAD} slow 10.0.2.15:80 /f1000.bin > {0}/slow 2>&1 & {TCPLOAD} vanish 10.0.2.15:80 /f10000000.bin > {0}/vanish 2>&1; \
         curl -sS -o {0}/big -w '%{{http_code}} %{{size_download}}' {URL}/f10000000.bin; wait",
        server.dir.display()
    );
    let big = server.sh(&script);
    assert_eq!(big, "200 10000000", "curl beside a vanished and a slow client");
    let slow = std::fs::read_to_string(server.dir.join("slow")).unwrap();
    assert!(slow.contains("slow client got HTTP/1.1 200 OK,"), "{slow}");
    assert!(std::fs::read_to_string(server.dir.join("vanish")).unwrap().contains("vanished"));
}

fn ab_and_wrk_see_no_failures(server: &Server) {
    let ab = server.sh(&format!("ab -n 2000 -c 50 {URL}/f1000.bin 2>&1"));
    assert!(ab.contains("Complete requests:      2000") && ab.contains("Failed requests:        0"), "{ab}");
    assert!(!ab.contains("Non-2xx responses"), "{ab}");
    let wrk = server.sh(&format!("wrk -t 2 -c 50 -d 10s {URL}/f1000.bin 2>&1"));
    assert!(!wrk.contains("Socket errors") && !wrk.contains("Non-2xx"), "{wrk}");
    let rate = wrk.lines().find(|line| line.starts_with("Requests/sec:")).unwrap_or_else(|| panic!("{wrk}"));
    let ab_rate = ab.lines().find(|line| line.starts_with("Requests per second:")).unwrap_or_default();
    eprintln!("1 KB: ab -c 50: {ab_rate}; wrk -c 50: {rate}");
}

fn idle_keep_alive_connections_are_closed(server: &Server) {
    let out = server.sh(&format!("{TCPLOAD} idle 10.0.2.15:80 /f100.bin"));
    let seconds: f64 = out.trim().strip_prefix("tcpload: closed after ").and_then(|rest| rest.split(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("{out}"));
    assert!((13.0..25.0).contains(&seconds), "closed after {seconds} s, the idle timeout is 15 s");
}

/// Every HTTP behaviour on one boot of `arpd, strayd` and the server `program`.
fn serves_correctly(program: &str) {
    let server = Server::boot(program, &format!("init=arpd,!strayd,{program}"), program);
    curl_gets_every_size_byte_for_byte_with_head_and_404(&server);
    connections_close_or_stay_as_asked_and_pipelined_requests_are_answered_in_order(&server);
    bad_clients_are_refused_or_served_and_never_stall_others(&server);
    ab_and_wrk_see_no_failures(&server);
    idle_keep_alive_connections_are_closed(&server);
}

#[test]
fn httpd_serves_curl_nc_ab_and_wrk_correctly() {
    serves_correctly("httpd");
}

#[test]
fn cheetah_serves_curl_nc_ab_and_wrk_correctly() {
    serves_correctly("cheetah");
}

/// The fields tshark prints for each packet of `capture` (read with `filter`).
fn tshark_fields(server: &Server, capture: &str, filter: &str, fields: &[&str]) -> Vec<String> {
    let fields: String = fields.iter().map(|field| format!(" -e {field}")).collect();
    let out = server.sh(&format!("tshark -r {capture} -Y '{filter}' -T fields -E separator=' '{fields} 2>/dev/null"));
    out.lines().map(str::to_string).collect()
}

/// strayd answers for the ports nobody holds (checked on the tap by tshark), and tcpdump's
/// capture of a curl session shows the packets the tap saw, in order.
#[test]
fn strayd_answers_strays_and_tcpdumps_pcap_matches_the_taps() {
    let server = Server::boot("stray", "init=arpd,!strayd,!tcpdump:tcp:port=80:pcap:quiet,httpd", "httpd");
    server.guest.wait_for("tcpdump: listening", Duration::from_secs(30)).unwrap();
    let tap = server.dir.join("tap.pcap");
    server.sh(&format!("tshark -q -i tap0 -w {} -a duration:25 >/dev/null 2>&1 & sleep 3", tap.display()));
    let got = server.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' {URL}/f10000.bin"));
    assert_eq!(got, "200");
    // A SYN to a closed port and a datagram to a closed port.
    server.sh("nc -z -w 3 10.0.2.15 81 || true; printf 'anyone?' | nc -u -w 2 10.0.2.15 9999 || true");
    let (_, output) = (std::thread::sleep(Duration::from_secs(24)), server.guest.output());
    let tap = tap.display().to_string();
    // RFC 793: a SYN (no ACK) gets RST+ACK with ACK = its SEQ + 1 and SEQ 0.
    let syn = tshark_fields(&server, &tap, "tcp.dstport == 81 && tcp.flags.syn == 1", &["tcp.seq_raw"]);
    let rst = tshark_fields(&server, &tap, "tcp.srcport == 81 && tcp.flags.reset == 1", &["tcp.seq_raw", "tcp.ack_raw", "tcp.flags.ack"]);
    assert!(!syn.is_empty() && !rst.is_empty(), "syn {syn:?} rst {rst:?}");
    let syn_seq: u64 = syn[0].parse().unwrap();
    assert_eq!(rst[0], format!("0 {} 1", (syn_seq + 1) % (1 << 32)), "the RST for the SYN");
    // ICMP port unreachable quoting the datagram's IP header and first 8 bytes.
    let icmp = tshark_fields(&server, &tap, "icmp.type == 3 && icmp.code == 3", &["ip.src", "ip.dst", "udp.dstport", "udp.length"]);
    assert!(icmp.iter().any(|line| line.starts_with("10.0.2.15,10.0.2.2 10.0.2.2,10.0.2.15 9999 15")), "{icmp:?}");
    // tcpdump's capture, from the console, read by tshark: the same port-80 packets as the tap's.
    let pcap = xok_tools::pcap::from_console(&output);
    assert!(pcap.len() > 24, "no capture on the console:\n{output}");
    let ours = server.dir.join("tcpdump.pcap");
    std::fs::write(&ours, &pcap).unwrap();
    let ours = ours.display().to_string();
    // Each direction in order (the guest stamps a sent frame when it is queued, the tap when it
    // is on the wire, so the two directions may interleave differently).
    let fields = ["tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.len"];
    for direction in ["tcp.dstport == 80", "tcp.srcport == 80"] {
        let theirs = tshark_fields(&server, &tap, direction, &fields);
        let mine = tshark_fields(&server, &ours, direction, &fields);
        assert!(theirs.len() > 3, "{direction}: {theirs:?}");
        assert_eq!(mine, theirs, "{direction}: tcpdump's capture against the tap's");
    }
}

/// The README's first command: `make run` boots Cheetah on QEMU's user network with a
/// localhost port forwarded to the guest's port 80, and curl on this machine gets the page.
#[test]
fn make_run_serves_the_site_on_a_forwarded_localhost_port() {
    use std::os::unix::process::CommandExt;
    let root = xok_tools::image::workspace_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Its own process group, so that the test ends make, cargo and QEMU together, and only them.
    let mut make = std::process::Command::new("make")
        .current_dir(&root)
        .args(["-s", "run", &format!("HTTP_PORT={port}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = make.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut page = String::new();
    while Instant::now() < deadline {
        let out = std::process::Command::new("curl").args(["-s", "--max-time", "5", &format!("http://127.0.0.1:{port}/")]).output().unwrap();
        page = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && !page.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // `--`: procps kill takes a bare `-N` as an option and, given no process, returns 0.
    let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{group}")]).status();
    let _ = make.wait();
    let site = std::fs::read_to_string(root.join("site/index.html")).unwrap();
    assert_eq!(page, site, "curl http://127.0.0.1:{port}/ after make run");
}
