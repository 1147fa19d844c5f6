//! HTTP/1.x as both servers speak it: strict, bounded request parsing (`httparse`) and
//! responses whose headers are prepared once per file ([`Site`]), so that answering a request
//! formats nothing.
//!
//! What is served: GET and HEAD (HEAD gets GET's headers, Content-Length included, and no
//! body), 404 for a path the site does not have, Content-Type from the extension. HTTP/1.1
//! connections stay open unless the request says `Connection: close`; HTTP/1.0 ones close after
//! the response unless it says `Connection: keep-alive`. Requests that arrive together are
//! answered in order (the caller parses the next one once the previous response is out).
//! Refused: a request line past [`REQUEST_LINE_MAX`] (414), a head past [`HEAD_MAX`] or with more
//! than [`HEADERS_MAX`] fields (431), anything malformed or with a body (400), another method
//! (501). A refusal closes the connection.

use crate::cache::{Prepared, SegmentSums};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// The longest request line accepted.
pub const REQUEST_LINE_MAX: usize = 8 * 1024;
/// The longest request head (request line and header fields) accepted.
pub const HEAD_MAX: usize = 16 * 1024;
/// The most header fields a request may carry.
pub const HEADERS_MAX: usize = 32;
/// What the servers say they are.
pub const SERVER: &str = "xok";

/// A method the servers implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET: the headers and the file.
    Get,
    /// HEAD: the headers only.
    Head,
}

/// A parsed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// GET or HEAD.
    pub method: Method,
    /// The target as sent (origin form: starts with `/`).
    pub target: &'a str,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// 400: malformed, or a request with a body.
    BadRequest,
    /// 414: the request line is too long.
    UriTooLong,
    /// 431: the head is too long or has too many fields.
    HeadersTooLarge,
    /// 501: a method other than GET and HEAD.
    NotImplemented,
}

impl Refusal {
    /// Every refusal.
    pub const ALL: [Refusal; 4] = [Refusal::BadRequest, Refusal::UriTooLong, Refusal::HeadersTooLarge, Refusal::NotImplemented];

    /// The status line's code and reason.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::UriTooLong => (414, "URI Too Long"),
            Refusal::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            Refusal::NotImplemented => (501, "Not Implemented"),
        }
    }
}

/// What [`parse`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request, and how many bytes of the buffer it took.
    Complete(Request<'a>, usize),
    /// Not a whole request yet: read more.
    Partial,
    /// A request to refuse (then close).
    Refused(Refusal),
}

/// Parses the request at the start of `buffer`.
pub fn parse(buffer: &[u8]) -> Parsed<'_> {
    let line_end = buffer.iter().position(|&byte| byte == b'\n');
    if line_end.map_or(buffer.len(), |end| end + 1) > REQUEST_LINE_MAX {
        return Parsed::Refused(Refusal::UriTooLong);
    }
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() > HEAD_MAX => return Parsed::Refused(Refusal::HeadersTooLarge),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refused(Refusal::HeadersTooLarge),
        Err(_) => return Parsed::Refused(Refusal::BadRequest),
    };
    if length > HEAD_MAX {
        return Parsed::Refused(Refusal::HeadersTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (request.method, request.path, request.version) else {
        return Parsed::Refused(Refusal::BadRequest);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Parsed::Refused(Refusal::NotImplemented),
    };
    if !target.starts_with('/') {
        return Parsed::Refused(Refusal::BadRequest);
    }
    let (mut close, mut keep) = (false, false);
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            if header.value.iter().any(|b| !b.is_ascii_digit()) || header.value.iter().any(|&b| b != b'0') {
                return Parsed::Refused(Refusal::BadRequest);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Refused(Refusal::BadRequest);
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                close |= option.eq_ignore_ascii_case(b"close");
                keep |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let keep_alive = if version >= 1 { !close } else { keep && !close };
    Parsed::Complete(Request { method, target, keep_alive }, length)
}

/// The path a target names, relative to the site's root (the query and fragment dropped; a
/// directory ends in `/`, the root is empty); `None` for a target that climbs out (`..`).
pub fn file_path(target: &str) -> Option<&str> {
    let path = target.split(['?', '#']).next().unwrap_or_default().trim_start_matches('/');
    if path.split('/').any(|segment| segment == "..") {
        return None;
    }
    Some(path)
}

/// The media type of a file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A response's head, prepared in both connection variants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    keep_alive: Vec<u8>,
    close: Vec<u8>,
}

impl Head {
    /// The head of a response with this status, type and body length.
    pub fn new(code: u16, reason: &str, content_type: &str, length: usize) -> Head {
        let variant = |connection: &str| {
            format!("HTTP/1.1 {code} {reason}\r\nServer: {SERVER}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: {connection}\r\n\r\n")
                .into_bytes()
        };
        Head { keep_alive: variant("keep-alive"), close: variant("close") }
    }

    /// The head's bytes for a connection that stays open or closes.
    pub fn bytes(&self, keep_alive: bool) -> &[u8] {
        if keep_alive { &self.keep_alive } else { &self.close }
    }
}

/// A response: the head to send, then the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Status line and header fields.
    pub head: &'a [u8],
    /// The body (empty for HEAD).
    pub body: &'a [u8],
    /// Whether the connection stays open afterwards.
    pub keep_alive: bool,
    /// The precomputed sums of its segments, if the maintenance tool made them for the segment
    /// size asked for (GET of a prepared file).
    pub sums: Option<SegmentSums<'a>>,
}

/// A file the site serves, with its prepared head and, from the maintenance tool, the sums of
/// its segments.
struct Resource<'f> {
    body: &'f [u8],
    head: Head,
    prepared: Option<Prepared<'f>>,
}

/// The files a server serves, with every response head prepared. A directory's
/// `index.html` also answers for the directory (`dir/` and, at the root, the empty path).
pub struct Site<'f> {
    resources: Vec<Resource<'f>>,
    paths: HashMap<String, usize>,
    not_found: Resource<'static>,
    refusals: HashMap<Refusal, Resource<'static>>,
}

const NOT_FOUND_BODY: &[u8] = b"<!doctype html><title>404 Not Found</title><h1>404 Not Found</h1>\n";

impl<'f> Site<'f> {
    /// A site serving `files` (paths relative to its root, and their bytes); every head is
    /// formatted here.
    pub fn new(files: impl IntoIterator<Item = (&'f str, &'f [u8])>) -> Site<'f> {
        Site::with_prepared(files.into_iter().map(|(path, body)| (path, body, None)))
    }

    /// A site serving `files` with the maintenance tool's records (`crate::cache`): a file
    /// whose record fits takes its heads and segment sums from it, the others get heads
    /// formatted here.
    pub fn with_prepared(files: impl IntoIterator<Item = (&'f str, &'f [u8], Option<&'f [u8]>)>) -> Site<'f> {
        let (mut resources, mut paths) = (Vec::new(), HashMap::new());
        for (path, body, record) in files {
            paths.insert(String::from(path), resources.len());
            if let Some(directory) = path.strip_suffix("index.html").filter(|d| d.is_empty() || d.ends_with('/')) {
                paths.insert(String::from(directory), resources.len());
            }
            let prepared = record.and_then(|record| Prepared::decode(record, body.len()));
            let head = match &prepared {
                Some(prepared) => Head { keep_alive: prepared.head_keep.to_vec(), close: prepared.head_close.to_vec() },
                None => Head::new(200, "OK", content_type(path), body.len()),
            };
            resources.push(Resource { body, head, prepared });
        }
        let not_found = Resource { body: NOT_FOUND_BODY, head: Head::new(404, "Not Found", "text/html; charset=utf-8", NOT_FOUND_BODY.len()), prepared: None };
        let refusals = Refusal::ALL
            .into_iter()
            .map(|refusal| {
                let (code, reason) = refusal.status();
                (refusal, Resource { body: &[][..], head: Head::new(code, reason, "text/plain; charset=utf-8", 0), prepared: None })
            })
            .collect();
        Site { resources, paths, not_found, refusals }
    }

    /// How many files came with a record that fits (their segments' sums are precomputed).
    pub fn prepared(&self) -> usize {
        self.resources.iter().filter(|resource| resource.prepared.is_some()).count()
    }

    /// How many files the site serves.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether the site serves nothing.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The response to `request`.
    pub fn reply(&self, request: &Request<'_>) -> Reply<'_> {
        self.reply_in_segments(request, 0)
    }

    /// The response to `request`, with its segments' precomputed sums if there are some for
    /// segments of `mss` bytes.
    pub fn reply_in_segments(&self, request: &Request<'_>, mss: u16) -> Reply<'_> {
        let found = file_path(request.target).and_then(|path| self.paths.get(path)).map(|&index| &self.resources[index]);
        let resource = found.unwrap_or(&self.not_found);
        let (body, sums) = match request.method {
            Method::Head => (&[][..], None),
            Method::Get => (resource.body, resource.prepared.as_ref().and_then(|prepared| prepared.sums(request.keep_alive, mss))),
        };
        Reply { head: resource.head.bytes(request.keep_alive), body, keep_alive: request.keep_alive, sums }
    }

    /// The response to a refused request (the connection closes after it).
    pub fn refusal(&self, refusal: Refusal) -> Reply<'_> {
        let resource = &self.refusals[&refusal];
        Reply { head: resource.head.bytes(false), body: resource.body, keep_alive: false, sums: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site<'static> {
        Site::new([("index.html", &b"<h1>hi</h1>"[..]), ("a/b.css", b"body{}"), ("empty.txt", b""), ("docs/index.html", b"docs")])
    }

    fn complete(buffer: &[u8]) -> (Request<'_>, usize) {
        match parse(buffer) {
            Parsed::Complete(request, length) => (request, length),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buffer)),
        }
    }

    #[test]
    fn get_and_head_have_the_same_head_and_only_get_a_body() {
        let site = site();
        let (get, length) = complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(length, 27);
        let reply = site.reply(&get);
        assert_eq!(reply.body, b"<h1>hi</h1>");
        let head = core::str::from_utf8(reply.head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(head.contains("Content-Length: 11\r\n") && head.contains("Content-Type: text/html; charset=utf-8\r\n"), "{head}");
        assert!(head.contains("Connection: keep-alive\r\n"));
        let (head_request, _) = complete(b"HEAD /index.html HTTP/1.1\r\n\r\n");
        let head_reply = site.reply(&head_request);
        assert_eq!((head_reply.head, head_reply.body), (reply.head, &b""[..]));
        assert_eq!(site.reply(&complete(b"GET /a/b.css?v=2 HTTP/1.1\r\n\r\n").0).body, b"body{}");
        assert_eq!(site.reply(&complete(b"GET /empty.txt HTTP/1.1\r\n\r\n").0).body, b"");
        assert_eq!(site.reply(&complete(b"GET /docs/ HTTP/1.1\r\n\r\n").0).body, b"docs");
        assert_eq!(site.len(), 4);
    }

    #[test]
    fn missing_files_and_climbing_paths_are_404() {
        let site = site();
        for target in ["/nope", "/../index.html", "/a/../index.html", "/a/b.css/", "/docs"] {
            let request = Request { method: Method::Get, target, keep_alive: true };
            let reply = site.reply(&request);
            assert!(reply.head.starts_with(b"HTTP/1.1 404 Not Found\r\n"), "{target}");
            assert_eq!(reply.body, NOT_FOUND_BODY);
        }
    }

    #[test]
    fn connections_stay_open_as_each_version_says() {
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n").0.keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").0.keep_alive);
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").0.keep_alive);
        assert!(!complete(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").0.keep_alive);
        let site = site();
        let reply = site.reply(&complete(b"GET / HTTP/1.0\r\n\r\n").0);
        assert!(core::str::from_utf8(reply.head).unwrap().contains("Connection: close\r\n"));
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let both = b"GET /a/b.css HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n";
        let (first, length) = complete(both);
        assert_eq!(first.target, "/a/b.css");
        let (second, rest) = complete(&both[length..]);
        assert_eq!((second.method, second.target, length + rest), (Method::Head, "/", both.len()));
    }

    #[test]
    fn partial_requests_wait_and_bad_ones_are_refused() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        assert_eq!(parse(b"GE"), Parsed::Partial);
        assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n"), Parsed::Refused(Refusal::NotImplemented));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), Parsed::Refused(Refusal::BadRequest));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), Parsed::Complete(..)));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Parsed::Refused(Refusal::BadRequest));
        assert_eq!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n"), Parsed::Refused(Refusal::BadRequest));
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n"), Parsed::Refused(Refusal::BadRequest));
        assert_eq!(parse(b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"), Parsed::Refused(Refusal::BadRequest));
        let mut long_line = Vec::from(&b"GET /"[..]);
        long_line.resize(REQUEST_LINE_MAX + 1, b'a');
        assert_eq!(parse(&long_line), Parsed::Refused(Refusal::UriTooLong), "refused before its end arrives");
        let mut many = Vec::from(&b"GET / HTTP/1.1\r\n"[..]);
        for i in 0..=HEADERS_MAX {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Refused(Refusal::HeadersTooLarge));
        let mut huge = Vec::from(&b"GET / HTTP/1.1\r\nX: "[..]);
        huge.resize(HEAD_MAX + 1, b'a');
        assert_eq!(parse(&huge), Parsed::Refused(Refusal::HeadersTooLarge));
        let site = site();
        for refusal in Refusal::ALL {
            let reply = site.refusal(refusal);
            let head = core::str::from_utf8(reply.head).unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {} ", refusal.status().0)) && head.contains("Connection: close\r\n"), "{head}");
            assert!(!reply.keep_alive);
        }
    }

    #[test]
    fn types_follow_extensions() {
        assert_eq!(content_type("a.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.png"), "image/png");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(file_path("/"), Some(""));
        assert_eq!(file_path("/docs/"), Some("docs/"));
        assert_eq!(file_path("/a/b?c#d"), Some("a/b"));
        assert_eq!(file_path("/a/../../etc"), None);
    }
}
