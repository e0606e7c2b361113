//! Validation of what nodes send: ids, addresses, capacities, and the service, tags and meta
//! of a registration. Every refusal is a 400 whose message names the field and the rule; the
//! limits are small on purpose (they travel in every list, event and routed snapshot).
//!
//! | field | rule |
//! |---|---|
//! | `service` | 1 to 64 bytes of `a-z`, `0-9`, `-`, `_`, `.` (lowercase: one name, one spelling) |
//! | `tags` | at most 16, each 1 to 64 bytes of ASCII letters, digits, `-_.:=/`, no duplicates |
//! | `meta` | at most 16 entries; keys 1 to 64 bytes of ASCII letters, digits, `-_.`; values at most 256 bytes of printable text (no control characters) |
//! | `maintenance` | a reason of at most 256 bytes of printable text |

use std::collections::BTreeMap;
use std::net::SocketAddr;

use distribution_shared::defaults;
use distribution_shared::wire::RegisterRequest;

use crate::error::ApiError;
use crate::registry::Registration;

/// The highest capacity a node may claim.
pub const MAX_CAPACITY: u32 = 1_000_000;

/// The longest service name, tag and meta key.
pub const MAX_NAME_LEN: usize = 64;
/// The most tags one registration carries.
pub const MAX_TAGS: usize = 16;
/// The most meta entries one registration carries.
pub const MAX_META: usize = 16;
/// The longest meta value and maintenance reason.
pub const MAX_TEXT_LEN: usize = 256;

/// Checks a registration and resolves the address callers will dial.
pub fn validate(req: RegisterRequest, peer: SocketAddr) -> Result<Registration, ApiError> {
    validate_id(&req.id)?;
    if req.port == 0 {
        return Err(ApiError::bad_request("port must be between 1 and 65535"));
    }
    let capacity = match req.capacity {
        None => defaults::NODE_CAPACITY,
        Some(c) if (1..=MAX_CAPACITY).contains(&c) => c,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "capacity must be between 1 and {MAX_CAPACITY}"
            )));
        }
    };
    let addr = match req.addr {
        Some(addr) => validate_addr(&addr)?,
        None => SocketAddr::new(peer.ip().to_canonical(), req.port).to_string(),
    };
    validate_service(&req.service)?;
    validate_tags(&req.tags)?;
    validate_meta(&req.meta)?;
    if let Some(reason) = &req.maintenance {
        validate_text("maintenance", reason)?;
    }
    Ok(Registration {
        id: req.id,
        addr,
        capacity,
        service: req.service,
        tags: req.tags,
        meta: req.meta,
        maintenance: req.maintenance,
    })
}

/// Checks a service name (see the module's table): what registrations carry and what
/// `?service=` asks for.
pub fn validate_service(service: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_NAME_LEN).contains(&service.len())
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "service must be 1 to {MAX_NAME_LEN} bytes of a-z, 0-9, '-', '_' and '.', got {:?}",
        truncate(service, 80)
    )))
}

/// Checks one tag (see the module's table): what registrations carry and what `?tag=` asks for.
pub fn validate_tag(tag: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_NAME_LEN).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:=/".contains(&b));
    if ok {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "a tag must be 1 to {MAX_NAME_LEN} bytes of ASCII letters, digits and '-_.:=/', got {:?}",
        truncate(tag, 80)
    )))
}

fn validate_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_TAGS} tags, got {}",
            tags.len()
        )));
    }
    for (i, tag) in tags.iter().enumerate() {
        validate_tag(tag)?;
        if tags[..i].contains(tag) {
            return Err(ApiError::bad_request(format!("tag {tag:?} is given twice")));
        }
    }
    Ok(())
}

fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if meta.len() > MAX_META {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_META} meta entries, got {}",
            meta.len()
        )));
    }
    for (key, value) in meta {
        let key_ok = (1..=MAX_NAME_LEN).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !key_ok {
            return Err(ApiError::bad_request(format!(
                "a meta key must be 1 to {MAX_NAME_LEN} bytes of ASCII letters, digits and '-_.', \
                 got {:?}",
                truncate(key, 80)
            )));
        }
        validate_text("a meta value", value)?;
    }
    Ok(())
}

/// Checks free text shown to humans: at most [`MAX_TEXT_LEN`] bytes, no control characters.
pub fn validate_text(what: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ApiError::bad_request(format!(
            "{what} must be at most {MAX_TEXT_LEN} bytes long"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what} must not hold control characters"
        )));
    }
    Ok(())
}

fn validate_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > defaults::MAX_ID_LEN {
        return Err(ApiError::bad_request(format!(
            "id must be 1 to {} bytes long",
            defaults::MAX_ID_LEN
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(ApiError::bad_request(
            "id may hold only ASCII letters, digits, '-', '_', '.' and ':'",
        ));
    }
    Ok(())
}

fn validate_addr(addr: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "addr must be host:port with a port from 1 to 65535, got {:?}",
            truncate(addr, 80)
        ))
    };
    if addr.len() > 255 {
        return Err(ApiError::bad_request("addr must be at most 255 bytes long"));
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    // Digits only: `u16::from_str` also takes a sign (`h:+80`), which other dialers refuse.
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if port == 0 || !host_ok {
        return Err(bad());
    }
    Ok(addr.to_owned())
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, port: u16, addr: Option<&str>) -> RegisterRequest {
        RegisterRequest {
            addr: addr.map(Into::into),
            ..RegisterRequest::new(id, port)
        }
    }

    #[test]
    fn host_comes_from_the_peer_unless_an_address_is_given() {
        let peer: SocketAddr = "10.1.2.3:55555".parse().unwrap();
        assert_eq!(
            validate(req("n1", 4000, None), peer).unwrap().addr,
            "10.1.2.3:4000"
        );
        let given = validate(req("n1", 4000, Some("node-7:4001")), peer).unwrap();
        assert_eq!(given.addr, "node-7:4001");
    }

    fn with(change: impl FnOnce(&mut RegisterRequest)) -> RegisterRequest {
        let mut req = req("n", 1, None);
        change(&mut req);
        req
    }

    #[test]
    fn services_tags_and_meta_within_the_limits_pass() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let ok = with(|r| {
            r.service = "calc-2.v1".into();
            r.tags = (0..16).map(|i| format!("zone=eu/{i}")).collect();
            r.meta = (0..16)
                .map(|i| (format!("k{i}"), "v é".repeat(50)))
                .collect();
        });
        let reg = validate(ok.clone(), peer).unwrap();
        assert_eq!(
            (reg.service, reg.tags, reg.meta),
            (ok.service, ok.tags, ok.meta)
        );
    }

    #[test]
    fn bad_registrations_are_refused() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for bad in [
            req("", 1, None),
            req("a b", 1, None),
            req(&"x".repeat(129), 1, None),
            req("n", 0, None),
            req("n", 1, Some("nohost")),
            req("n", 1, Some(":80")),
            req("n", 1, Some("h:0")),
            req("n", 1, Some("h:99999")),
            req("n", 1, Some("h/x:80")),
            with(|r| r.service = String::new()),
            with(|r| r.service = "Calc".into()),
            with(|r| r.service = "a b".into()),
            with(|r| r.service = "s".repeat(65)),
            with(|r| r.tags = vec![String::new()]),
            with(|r| r.tags = vec!["gpu".into(), "gpu".into()]),
            with(|r| r.tags = vec!["a,b".into()]),
            with(|r| r.tags = (0..17).map(|i| format!("t{i}")).collect()),
            with(|r| r.meta = [(String::new(), "v".into())].into()),
            with(|r| r.meta = [("k".into(), "v\n".into())].into()),
            with(|r| r.meta = [("k".into(), "v".repeat(257))].into()),
            with(|r| r.meta = (0..17).map(|i| (format!("k{i}"), "v".into())).collect()),
            with(|r| r.maintenance = Some("x".repeat(257))),
        ] {
            let err = validate(bad.clone(), peer).unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
