//! What a search box's text asks for: words and "quoted phrases", and the shortcuts `from:`,
//! `in:`, `before:`, `after:` and `has:file`. Nothing in the text is query syntax of the index:
//! every word goes through the same analyzer as the messages, so no input can inject operators.

use crate::error::{Error, Result};

/// Longest query text accepted (characters).
pub const MAX_QUERY_CHARS: usize = 500;
/// Most words and phrases in one query.
pub const MAX_PARTS: usize = 16;

/// A search box's text, taken apart.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// Words (each alone) and phrases (in order), as typed.
    pub parts: Vec<Part>,
    /// `from:` (a user id, or a name of this server's user).
    pub from: Option<String>,
    /// `in:` (a room id, an alias or a room's name).
    pub room: Option<String>,
    /// `after:YYYY-MM-DD`: from the day after it (ms since the epoch, inclusive).
    pub after_ms: Option<u64>,
    /// `before:YYYY-MM-DD`: before that day (ms, exclusive).
    pub before_ms: Option<u64>,
    /// `has:file`.
    pub has_file: bool,
}

/// A word or a quoted phrase.
#[derive(Debug, PartialEq)]
pub enum Part {
    /// A word (or what the analyzer splits it into, found as a phrase).
    Word(String),
    /// Words in this order.
    Phrase(String),
}

/// Parses the text of a search box; `400` for text too long, too many parts, or a shortcut
/// with a value it cannot read.
pub fn parse(text: &str) -> Result<Parsed> {
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::bad(format!("the search is too long (at most {MAX_QUERY_CHARS} characters)")));
    }
    let mut out = Parsed::default();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(after_quote) = rest.strip_prefix('"') {
            let (phrase, tail) = after_quote.split_once('"').unwrap_or((after_quote, ""));
            if !phrase.trim().is_empty() {
                out.parts.push(Part::Phrase(phrase.trim().to_string()));
            }
            rest = tail.trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        rest = tail.trim_start();
        if !shortcut(word, &mut out)? {
            out.parts.push(Part::Word(word.to_string()));
        }
    }
    if out.parts.len() > MAX_PARTS {
        return Err(Error::bad(format!("too many words (at most {MAX_PARTS})")));
    }
    Ok(out)
}

/// Reads `key:value` into `out` if `key` is a shortcut; false if the word is plain text.
fn shortcut(word: &str, out: &mut Parsed) -> Result<bool> {
    let Some((key, value)) = word.split_once(':') else { return Ok(false) };
    if value.is_empty() {
        return Ok(false);
    }
    match key.to_ascii_lowercase().as_str() {
        "from" => out.from = Some(value.to_string()),
        "in" => out.room = Some(value.to_string()),
        "after" => out.after_ms = Some(day_ms(value)?.saturating_add(DAY_MS)),
        "before" => out.before_ms = Some(day_ms(value)?),
        "has" if matches!(value.to_ascii_lowercase().as_str(), "file" | "files" | "attachment") => out.has_file = true,
        "has" => return Err(Error::bad(format!("has:{value} is not a filter (try has:file)"))),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// The start of a day (`YYYY-MM-DD`, UTC) in ms since the epoch.
pub fn day_ms(text: &str) -> Result<u64> {
    let bad = || Error::bad(format!("{text:?} is not a date (YYYY-MM-DD)"));
    let mut it = text.splitn(3, '-');
    let mut num = |len: usize| -> Result<i64> {
        let part = it.next().filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).ok_or_else(bad)?;
        part.parse().map_err(|_| bad())
    };
    let (y, m, d) = (num(4)?, num(2)?, num(2)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&d) {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d) as u64 * DAY_MS)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_phrases_and_shortcuts() {
        let p = parse(r#"lunch "next friday" from:ana in:#food:x has:file after:2026-01-31 before:2026-03-01 12:30"#)
            .unwrap();
        assert_eq!(
            p.parts,
            vec![Part::Word("lunch".into()), Part::Phrase("next friday".into()), Part::Word("12:30".into())]
        );
        assert_eq!(p.from.as_deref(), Some("ana"));
        assert_eq!(p.room.as_deref(), Some("#food:x"));
        assert!(p.has_file);
        assert_eq!(p.after_ms, Some(day_ms("2026-02-01").unwrap()));
        assert_eq!(day_ms("1970-01-02").unwrap(), DAY_MS);
        assert_eq!(day_ms("2026-12-03").unwrap(), 1_796_256_000_000);
        assert!(parse("before:2026-02-30").is_err());
        assert!(parse("has:cats").is_err());
        assert!(parse(&"a".repeat(501)).is_err());
        assert_eq!(parse(r#""unclosed phrase"#).unwrap().parts, vec![Part::Phrase("unclosed phrase".into())]);
        assert!(parse("   ").unwrap().parts.is_empty());
    }
}
