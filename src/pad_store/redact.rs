//! What a shown URL or option hides: credentials become `***`, and so does
//! the `user:password@` of a URL. The one place that decides it, for
//! messages, logs, a store's `repr` and the Python layer.

/// The options whose values are credentials, named as `object_store` names
/// them without their optional `aws_` prefix. The access key id is no
/// secret by itself, but it is half of a credential pair and tells nothing
/// a user needs to read back, so it is hidden too.
pub const CREDENTIAL_OPTIONS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "session_token",
    "token",
    "sse_customer_key_base64",
];

/// What a redacted credential shows instead of its value.
pub const REDACTED: &str = "***";

/// Whether the option `name` (any case, `aws_` prefix or not) holds a
/// credential.
pub fn is_credential(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("aws_").unwrap_or(&name);
    CREDENTIAL_OPTIONS.contains(&name)
}

/// The value of option `name` as it may be shown: a credential is
/// [`REDACTED`], a URL (an endpoint) loses its userinfo.
pub fn redact_value(name: &str, value: &str) -> String {
    if is_credential(name) {
        REDACTED.to_owned()
    } else {
        redact_userinfo(value)
    }
}

/// `url` as it may be shown in a repr, a message or a log line: the
/// `user:password@` of a URL and of any URL in its query (an endpoint) is
/// replaced by `***@`, and the value of every credential option in its
/// query by `***`. A plain path is returned as it is (it has no query, and
/// an `@` in it is part of a file name). The one place that decides what a
/// shown URL hides.
pub fn redact_url(url: &str) -> String {
    let has_query = url.trim_start().starts_with("sim+") || scheme_of(url.trim()).is_some();
    if !has_query {
        return url.to_owned();
    }
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = redact_userinfo(base);
    if let Some(query) = query {
        shown.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let mut decoded = url::form_urlencoded::parse(pair.as_bytes());
                match decoded.next() {
                    Some((key, value)) => {
                        let redacted = redact_value(&key, &value);
                        if redacted == value {
                            pair.to_owned()
                        } else {
                            let raw_key = pair.split_once('=').map_or(pair, |(key, _)| key);
                            format!("{raw_key}={redacted}")
                        }
                    }
                    None => pair.to_owned(),
                }
            })
            .collect();
        shown.push_str(&pairs.join("&"));
    }
    shown
}

/// `text` with the userinfo of every `scheme://user:password@host` in it
/// replaced by `***`.
pub(super) fn redact_userinfo(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        shown.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after.find(['/', '?', '#', '&']).unwrap_or(after.len());
        let authority = &after[..authority_len];
        match authority.rfind('@') {
            Some(user_end) => {
                shown.push_str(REDACTED);
                shown.push_str(&authority[user_end..]);
            }
            None => shown.push_str(authority),
        }
        rest = &after[authority_len..];
    }
    shown.push_str(rest);
    shown
}

/// The scheme of `url` (`memory` in `memory://x`), or `None` for a path. A
/// single letter before `:` is a Windows drive, not a scheme.
pub(super) fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && scheme.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}
