//! The one parser of a master's address, for the nodes and the remote callers alike: what
//! is accepted (`host:port`, `http://host:port[/]`, `https://…` only with TLS settings) and
//! what is refused up front (a path, query, fragment or user name, since every request goes to
//! `{base}/v1/...`; an empty host; a bad port; another scheme), as one typed [`AddressError`];
//! and [`split_masters`], the one reader of a list of masters (`m1:3000,m2:3000`).

use reqwest::Url;

/// What is wrong with a master's address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not a URL, even with `http://` in front: an empty host, a bad port, a space...
    #[error("not a URL: {0}")]
    NotAUrl(#[source] url::ParseError),
    /// A scheme other than `http` and `https`.
    #[error("the scheme must be http:// or https://, not {0}://")]
    Scheme(String),
    /// `https://` without TLS settings to dial it with.
    #[error("https:// needs TLS settings (the cluster CA)")]
    HttpsWithoutTls,
    /// No host.
    #[error("no host")]
    NoHost,
    /// A path, query, fragment or user name: requests go to `{base}/v1/...`.
    #[error(
        "give the registry as host:port or http(s)://host:port, without a path, query, fragment or user"
    )]
    NotABase,
}
/// The base URL of the registry API (`scheme://host[:port]/`) from a master's address:
/// `host:port` (`https` when `tls`, else `http`) or `http(s)://host:port[/]`; `https` only
/// when `tls` (there are TLS settings to dial it with).
pub fn parse_address(master: &str, tls: bool) -> Result<Url, AddressError> {
    let trimmed = master.trim();
    let url = if trimmed.contains("://") {
        Url::parse(trimmed)
    } else if tls {
        Url::parse(&format!("https://{trimmed}"))
    } else {
        Url::parse(&format!("http://{trimmed}"))
    }
    .map_err(AddressError::NotAUrl)?;
    match url.scheme() {
        "http" => {}
        "https" if tls => {}
        "https" => return Err(AddressError::HttpsWithoutTls),
        other => return Err(AddressError::Scheme(other.to_owned())),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(AddressError::NoHost);
    }
    if !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(AddressError::NotABase);
    }
    Ok(url)
}

/// The addresses of a list of masters, `"m1:3000,m2:3000"` (what `--master` and `DIST_MASTER`
/// take): split on commas, trimmed, empty items dropped, order kept (a remote caller follows
/// the first and fails over in this order). A list with no address at all gives one empty
/// address, which [`parse_address`] refuses (no host).
pub fn split_masters(list: &str) -> Vec<&str> {
    let masters: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    if masters.is_empty() {
        vec![""]
    } else {
        masters
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry_client::{RegistryClient, RegistrySettings};

    fn parsed(master: &str, tls: bool) -> Result<String, AddressError> {
        let client = RegistryClient::new(master, RegistrySettings::new(Duration::from_secs(1)));
        parse_address(master, tls).map(|base| {
            if !tls {
                // The client takes the same addresses as the parser.
                assert_eq!(
                    client.as_ref().map(|c| c.base().clone()).ok(),
                    Some(base.clone())
                );
            }
            base.to_string()
        })
    }

    #[test]
    fn good_addresses_parse_to_a_base() {
        for (master, tls, base) in [
            ("127.0.0.1:3000", false, "http://127.0.0.1:3000/"),
            (" m:3000 ", false, "http://m:3000/"),
            ("http://m:3000", false, "http://m:3000/"),
            ("http://m:3000/", false, "http://m:3000/"),
            ("http://[::1]:3000/", false, "http://[::1]:3000/"),
            ("m:3000", true, "https://m:3000/"),
            ("https://m:3000", true, "https://m:3000/"),
            ("https://10.0.0.1:3000", true, "https://10.0.0.1:3000/"),
            // Explicit http stays http even with TLS settings.
            ("http://m:3000", true, "http://m:3000/"),
        ] {
            assert_eq!(parsed(master, tls).as_deref(), Ok(base), "{master:?}");
        }
    }

    #[test]
    fn bad_addresses_are_refused_with_what_is_wrong() {
        use AddressError::*;
        // `None`: not a URL at all (the parse error says why).
        let cases = [
            ("", None),
            ("http://", None),
            ("m 3000", None),
            ("m:99999", None),
            ("https://m:3000", Some(HttpsWithoutTls)),
            ("ftp://m", Some(Scheme("ftp".into()))),
            ("ftp://m:3000", Some(Scheme("ftp".into()))),
            ("http://m:3000/v1", Some(NotABase)),
            ("http://m:3000/path", Some(NotABase)),
            ("http://m:3000/registry/", Some(NotABase)),
            ("m:3000/v1", Some(NotABase)),
            ("http://m:3000?x=1", Some(NotABase)),
            ("http://m:3000#top", Some(NotABase)),
            ("http://user:pw@m:3000", Some(NotABase)),
        ];
        for (bad, expected) in cases {
            let err = parsed(bad, false).expect_err(bad);
            match expected {
                Some(expected) => assert_eq!(err, expected, "{bad:?}"),
                None => assert!(matches!(err, NotAUrl(_)), "{bad:?}: {err:?}"),
            }
            let err = RegistryClient::new(bad, RegistrySettings::new(Duration::from_secs(1)))
                .expect_err(bad)
                .to_string();
            assert!(err.starts_with("bad master address"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_list_of_masters_splits_on_commas_in_order() {
        assert_eq!(split_masters("m1:3000"), ["m1:3000"]);
        assert_eq!(
            split_masters(" m1:3000, http://m2:3000/ ,,"),
            ["m1:3000", "http://m2:3000/"]
        );
        // Nothing but separators: one empty address, for the parser to refuse.
        assert_eq!(split_masters(" , "), [""]);
        assert!(parse_address(split_masters(" , ")[0], false).is_err());
    }
}
