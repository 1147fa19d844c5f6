//! A Linux TCP client that loads an echo server, run inside the test's network namespace:
//!
//! - `tcpload many ADDR:PORT N`: opens N connections and keeps them all open, then sends each a
//!   message of its own and checks that exactly that comes back, then closes them all;
//! - `tcpload hold ADDR:PORT N`: opens N connections, checks an echo on each, says so and
//!   keeps them open for at most 120 s (until it is killed);
//! - `tcpload accepts ADDR:PORT SECONDS`: connects, exchanges one byte and closes, again and
//!   again, for SECONDS (connections accepted per second);
//! - `tcpload rtt ADDR:PORT SECONDS`: one connection, a 64-byte message echoed back and forth
//!   for SECONDS (round trips per second).
//!
//! - `tcpload slow ADDR:PORT PATH`: sends `GET PATH HTTP/1.0` a byte per 100 ms and reads the
//!   whole response (`tcpload: slow client got <status line>, <n> bytes in all`);
//! - `tcpload idle ADDR:PORT PATH`: asks for PATH on a keep-alive connection, reads the response
//!   and then waits, at most 60 s, for the server to close the idle connection
//!   (`tcpload: closed after S s idle`);
//! - `tcpload vanish ADDR:PORT PATH`: asks for PATH, reads 10 000 bytes of the response and
//!   drops the connection (the peer gets a RST).
//!
//! It prints one result line (`tcpload: ...`) and exits non-zero at the first wrong byte,
//! refusal or timeout. Every loop is bounded by count and by a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one connect, read or write may take before the run fails.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn connect(to: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&to, IO_TIMEOUT).map_err(|error| format!("connect: {error}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT))).map_err(|error| error.to_string())?;
    stream.set_nodelay(true).map_err(|error| error.to_string())?;
    Ok(stream)
}

fn echo(stream: &mut TcpStream, message: &[u8]) -> Result<(), String> {
    stream.write_all(message).map_err(|error| format!("write: {error}"))?;
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).map_err(|error| format!("read: {error}"))?;
    if echoed != message {
        return Err(format!("echo differs: sent {:?}, got {:?}", String::from_utf8_lossy(message), String::from_utf8_lossy(&echoed)));
    }
    Ok(())
}

fn many(to: SocketAddr, count: usize) -> Result<String, String> {
    let started = Instant::now();
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        streams.push(connect(to).map_err(|error| format!("connection {index}: {error}"))?);
    }
    let connected = started.elapsed();
    let echo_start = Instant::now();
    for (index, stream) in streams.iter_mut().enumerate() {
        let message = format!("connection {index:04} of {count}: its own bytes\n");
        stream.write_all(message.as_bytes()).map_err(|error| format!("connection {index}: write: {error}"))?;
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        let message = format!("connection {index:04} of {count}: its own bytes\n");
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).map_err(|error| format!("connection {index}: read: {error}"))?;
        if echoed != message.as_bytes() {
            return Err(format!("connection {index}: got {:?}", String::from_utf8_lossy(&echoed)));
        }
    }
    let echoed = echo_start.elapsed();
    drop(streams);
    Ok(format!(
        "{count} connections open at once in {:.1} s ({:.0}/s), each echoed its own message in {:.1} s",
        connected.as_secs_f64(),
        count as f64 / connected.as_secs_f64(),
        echoed.as_secs_f64()
    ))
}

fn hold(to: SocketAddr, count: usize) -> Result<String, String> {
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        let mut stream = connect(to).map_err(|error| format!("connection {index}: {error}"))?;
        echo(&mut stream, format!("held {index}\n").as_bytes())?;
        streams.push(stream);
    }
    println!("tcpload: holding {count} connections");
    std::io::stdout().flush().map_err(|error| error.to_string())?;
    std::thread::sleep(Duration::from_secs(120));
    Ok(format!("held {count} connections for 120 s"))
}

fn slow(to: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = connect(to)?;
    for byte in format!("GET {path} HTTP/1.0\r\n\r\n").bytes() {
        stream.write_all(&[byte]).map_err(|error| format!("write: {error}"))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|error| format!("read: {error}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_string();
    Ok(format!("slow client got {status}, {} bytes in all", response.len()))
}

fn idle(to: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = connect(to)?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|error| error.to_string())?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).map_err(|error| format!("write: {error}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).map_err(|error| format!("read: {error}"))?;
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let length: usize = text.lines().find_map(|line| line.strip_prefix("Content-Length: ")?.trim().parse().ok()).ok_or("no Content-Length")?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).map_err(|error| format!("read: {error}"))?;
    let idle_since = Instant::now();
    match stream.read(&mut byte) {
        Ok(0) => Ok(format!("closed after {:.1} s idle", idle_since.elapsed().as_secs_f64())),
        Ok(_) => Err("bytes after the response".to_string()),
        Err(error) => Err(format!("still open after {:.1} s: {error}", idle_since.elapsed().as_secs_f64())),
    }
}

fn vanish(to: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = connect(to)?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).map_err(|error| format!("write: {error}"))?;
    let mut part = vec![0u8; 10_000];
    stream.read_exact(&mut part).map_err(|error| format!("read: {error}"))?;
    // Unread data at close makes Linux send a RST: the client vanishes mid-response.
    drop(stream);
    Ok("read 10000 bytes and vanished".to_string())
}

fn accepts(to: SocketAddr, seconds: u64) -> Result<String, String> {
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) && count < 1_000_000 {
        let mut stream = connect(to)?;
        echo(&mut stream, b"x")?;
        count += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(format!("{count} connections made, echoed and closed in {elapsed:.1} s: {:.1} accepts/s", count as f64 / elapsed))
}

fn rtt(to: SocketAddr, seconds: u64) -> Result<String, String> {
    let mut stream = connect(to)?;
    let message = [b'r'; 64];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) && count < 10_000_000 {
        echo(&mut stream, &message)?;
        count += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(format!("{count} round trips of 64 bytes in {elapsed:.1} s: {:.1} round trips/s", count as f64 / elapsed))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tcpload many|hold|accepts|rtt ADDR:PORT N|SECONDS, or slow|vanish|idle ADDR:PORT PATH";
    let (Some(mode), Some(to), Some(third)) = (args.first(), args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let n = third.parse::<u64>().unwrap_or(0);
    let result = match mode.as_str() {
        "slow" => slow(to, third),
        "vanish" => vanish(to, third),
        "idle" => idle(to, third),
        "many" => many(to, n as usize),
        "hold" => hold(to, n as usize),
        "accepts" => accepts(to, n),
        "rtt" => rtt(to, n),
        _ => Err(usage.to_string()),
    };
    match result {
        Ok(line) => println!("tcpload: {line}"),
        Err(error) => {
            eprintln!("tcpload: {error}");
            std::process::exit(1);
        }
    }
}
