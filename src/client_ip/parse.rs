//! The forwarding headers' syntax: `X-Forwarded-For`, `Forwarded` (RFC 7239) elements and
//! nodes, and single-address headers.

use std::net::IpAddr;

use super::canonical_ip;

/// The address of a single-address header when it appears exactly once and parses, else the
/// peer.
pub(super) fn single_ip(
    peer: IpAddr,
    lines: http::header::GetAll<'_, http::HeaderValue>,
) -> IpAddr {
    let mut lines = lines.iter();
    match (lines.next(), lines.next()) {
        (Some(line), None) => parse_node(line.as_bytes()).map_or(peer, canonical_ip),
        _ => peer,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    XForwardedFor,
    Forwarded,
}

/// The comma-separated elements of one header line, yielded right to left. For `Forwarded`,
/// commas inside quoted strings do not split.
pub(super) struct Elements<'a> {
    rest: &'a [u8],
    syntax: Syntax,
    /// For `Forwarded`: the element boundaries, found by a forward scan (bounded by the line cap).
    bounds: Vec<(usize, usize)>,
    done: bool,
}

impl<'a> Elements<'a> {
    pub(super) fn new(line: &'a [u8], syntax: Syntax) -> Self {
        let mut bounds = Vec::new();
        if syntax == Syntax::Forwarded {
            let mut start = 0;
            let mut in_quotes = false;
            let mut escaped = false;
            for (i, &b) in line.iter().enumerate() {
                if in_quotes {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_quotes = false;
                    }
                } else if b == b'"' {
                    in_quotes = true;
                } else if b == b',' {
                    bounds.push((start, i));
                    start = i + 1;
                }
            }
            // An unterminated quote leaves a last element that will not parse.
            bounds.push((start, line.len()));
        }
        Self {
            rest: line,
            syntax,
            bounds,
            done: false,
        }
    }

    /// The next element from the right, and whether it is the left-most one of the line.
    pub(super) fn next_back(&mut self) -> Option<(&'a [u8], bool)> {
        if self.done {
            return None;
        }
        match self.syntax {
            Syntax::XForwardedFor => match self.rest.iter().rposition(|&b| b == b',') {
                Some(i) => {
                    let element = self.rest.get(i + 1..).unwrap_or_default();
                    self.rest = self.rest.get(..i).unwrap_or_default();
                    Some((element, false))
                }
                None => {
                    self.done = true;
                    Some((self.rest, true))
                }
            },
            Syntax::Forwarded => {
                let (start, end) = self.bounds.pop()?;
                let is_first = self.bounds.is_empty();
                if is_first {
                    self.done = true;
                }
                Some((self.rest.get(start..end).unwrap_or_default(), is_first))
            }
        }
    }
}

/// The `for=` value of one `Forwarded` element (unquoted), if it has exactly one.
pub(super) fn forwarded_for(element: &[u8]) -> Option<Vec<u8>> {
    let mut found = None;
    let mut i = 0;
    let len = element.len();
    while i < len {
        // name
        let name_start = i;
        while i < len && element.get(i).is_some_and(|&b| b != b'=' && b != b';') {
            i += 1;
        }
        let name = trim(element.get(name_start..i)?);
        if element.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        // skip optional whitespace before the value
        while element.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        let mut value = Vec::new();
        if element.get(i) == Some(&b'"') {
            i += 1;
            let mut closed = false;
            while let Some(&b) = element.get(i) {
                i += 1;
                match b {
                    b'\\' => {
                        value.push(*element.get(i)?);
                        i += 1;
                    }
                    b'"' => {
                        closed = true;
                        break;
                    }
                    b => value.push(b),
                }
            }
            if !closed {
                return None;
            }
            while element.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
                i += 1;
            }
        } else {
            while let Some(&b) = element.get(i) {
                if b == b';' {
                    break;
                }
                value.push(b);
                i += 1;
            }
            let trimmed = trim(&value).to_vec();
            value = trimmed;
        }
        match element.get(i) {
            None => {}
            Some(b';') => i += 1,
            Some(_) => return None,
        }
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
    }
    found
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

pub(super) fn parse_node_owned(node: Vec<u8>) -> Option<IpAddr> {
    parse_node(&node)
}

/// A node (`192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]:80`); `unknown`,
/// obfuscated identifiers and anything else give `None`.
pub(super) fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(trim(node)).ok()?;
    if node.is_empty() || node.len() > 64 {
        return None;
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = node.split_once(':')?;
    if !valid_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(port: &str) -> bool {
    // A number, or an RFC 7239 obfuscated port (`_abc`): ignored either way.
    !port.is_empty()
        && port.len() <= 16
        && (port.bytes().all(|b| b.is_ascii_digit())
            || (port.starts_with('_')
                && port
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')))
}
