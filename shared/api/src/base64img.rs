//! Lenient base64 decoding of `method=base64` images.
//!
//! Clients get base64 wrong in many small ways; every one of these is accepted:
//! line breaks and tabs (MIME-style wrapping), a `data:image/png;base64,`
//! prefix, the URL-safe alphabet (`-_`), missing or extra `=` padding, a `+`
//! that became a space because it was not percent-encoded in a query string or
//! form, and a value that was percent-encoded twice (`%2B`).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use captcha_core::ErrorCode;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes an image sent as base64.
///
/// Nothing left after cleaning → `ERROR_ZERO_CAPTCHA_FILESIZE`; characters
/// outside the alphabet or an impossible length → `ERROR_UPLOAD`.
pub(crate) fn decode(value: &str) -> Result<Vec<u8>, ErrorCode> {
    let mut s = value.trim();
    if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:")) {
        // `data:image/png;base64,<payload>`
        s = match s.split_once(',') {
            Some((_, payload)) => payload,
            None => return Err(ErrorCode::Upload),
        };
    }
    let percent_decoded;
    if s.contains('%') {
        percent_decoded = percent_decode(s).ok_or(ErrorCode::Upload)?;
        s = &percent_decoded;
    }

    // First reading: a space is a `+` that lost its encoding.
    let with_plus = clean(s, Some('+'));
    if with_plus.is_empty() {
        return Err(ErrorCode::ZeroCaptchaFilesize);
    }
    if let Ok(bytes) = LENIENT.decode(&with_plus) {
        return Ok(bytes);
    }
    // Second reading: spaces were just wrapping.
    if s.contains(' ') {
        if let Ok(bytes) = LENIENT.decode(clean(s, None)) {
            return Ok(bytes);
        }
    }
    Err(ErrorCode::Upload)
}

/// Drops whitespace and padding, maps the URL-safe alphabet to the standard one,
/// and turns spaces into `space` (or drops them).
fn clean(s: &str, space: Option<char>) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.extend(space),
            '\r' | '\n' | '\t' | '\x0b' | '\x0c' | '=' => {}
            '-' => out.push('+'),
            '_' => out.push('/'),
            c => out.push(c),
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    fn sample() -> Vec<u8> {
        // Bytes chosen so the standard encoding contains both `+` and `/`.
        (0u8..=255).rev().chain(0u8..=255).collect()
    }

    #[test]
    fn standard_and_variants() {
        let raw = sample();
        let std = STANDARD.encode(&raw);
        assert!(std.contains('+') && std.contains('/'));
        assert_eq!(decode(&std).unwrap(), raw);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode(&raw)).unwrap(), raw);
        assert_eq!(decode(&format!("data:image/png;base64,{std}")).unwrap(), raw);
        assert_eq!(decode(&format!("DATA:image/jpeg;base64,{std}")).unwrap(), raw);
        let wrapped: String =
            std.as_bytes().chunks(76).map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap())).collect();
        assert_eq!(decode(&wrapped).unwrap(), raw);
        assert_eq!(decode(&std.replace('+', " ")).unwrap(), raw);
        assert_eq!(decode(&std.replace('+', "%2B").replace('/', "%2f")).unwrap(), raw);
        assert_eq!(decode(&format!("  {}  ", std.trim_end_matches('='))).unwrap(), raw);
    }

    #[test]
    fn space_wrapped_without_plus() {
        // Only `/` in the payload: spaces can be dropped instead of read as `+`.
        let raw = vec![0xffu8; 30];
        let std = STANDARD.encode(&raw);
        let spaced = format!("{} {}", &std[..8], &std[8..]);
        assert_eq!(decode(&spaced).unwrap(), raw);
    }

    #[test]
    fn errors() {
        assert_eq!(decode(""), Err(ErrorCode::ZeroCaptchaFilesize));
        assert_eq!(decode(" \r\n= "), Err(ErrorCode::ZeroCaptchaFilesize));
        assert_eq!(decode("data:image/png;base64,"), Err(ErrorCode::ZeroCaptchaFilesize));
        assert_eq!(decode("data:image/png;base64"), Err(ErrorCode::Upload));
        assert_eq!(decode("not*base64!"), Err(ErrorCode::Upload));
        assert_eq!(decode("A"), Err(ErrorCode::Upload));
        assert_eq!(decode("%zz"), Err(ErrorCode::Upload));
        assert_eq!(decode("ééé"), Err(ErrorCode::Upload));
    }
}
