//! What the tests that run `vigil serve` (or `vigil demo --serve`) as a child process share:
//! where it listens, and reading a chunked HTTP body.
//!
//! Include it with `#[path = "support/serving.rs"] mod serving;`.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the child's stderr until `vigil serve: http://ADDR/ ...` and returns `ADDR`; keeps
/// draining stderr afterwards so the server never blocks on a full pipe.
pub fn listening_address(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("vigil serve: http://") {
            addr = rest.split('/').next().map(str::to_string);
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    addr.expect("the server did not say where it listens")
}

/// The body of a `Transfer-Encoding: chunked` reply.
pub fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}
