//! How text becomes search terms, the same for messages and for queries: words (runs of
//! letters and digits), lower-cased and folded to ASCII (`café` finds `cafe`); Chinese and
//! Japanese, which are written without spaces, as overlapping pairs of characters (bigrams),
//! so that any word of two or more characters is found as a phrase of its pairs.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the analyzer is registered under in the index.
pub const ANALYZER: &str = "chat";

/// Longest term kept (in bytes); longer runs (base64, hashes) are not searchable words.
const MAX_TERM: usize = 40;

/// The analyzer: [`Words`], then long terms dropped, lower case, ASCII folding.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(Words)
        .filter(RemoveLongFilter::limit(MAX_TERM))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The terms of `text`, as the index has them, in order.
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Whether `c` is written without spaces between words (Han, Hiragana, Katakana).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x31F0..=0x31FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF
        | 0xFF66..=0xFF9F | 0x20000..=0x2FA1F)
}

/// Splits text into words and CJK bigrams (a lone CJK character is a term of its own).
#[derive(Clone, Default)]
pub struct Words;

/// The tokens of one text.
pub struct WordStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for Words {
    type TokenStream<'a> = WordStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream {
        WordStream { tokens: split(text), next: 0 }
    }
}

impl TokenStream for WordStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

fn split(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let push = |from: usize, to: usize, out: &mut Vec<Token>| {
        let position = out.len();
        out.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text: text[from..to].to_string(),
            position_length: 1,
        });
    };
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if is_cjk(c) {
            let mut run = vec![start];
            while let Some(&(i, c)) = chars.peek() {
                if !is_cjk(c) {
                    break;
                }
                run.push(i);
                chars.next();
            }
            let end = chars.peek().map_or(text.len(), |(i, _)| *i);
            if run.len() == 1 {
                push(start, end, &mut out);
            }
            for k in 0..run.len().saturating_sub(1) {
                push(run[k], run.get(k + 2).copied().unwrap_or(end), &mut out);
            }
        } else if c.is_alphanumeric() {
            while let Some(&(_, c)) = chars.peek() {
                if !c.is_alphanumeric() || is_cjk(c) {
                    break;
                }
                chars.next();
            }
            let end = chars.peek().map_or(text.len(), |(i, _)| *i);
            push(start, end, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_and_cjk_pairs() {
        assert_eq!(terms("Café au LAIT, naïve!"), ["cafe", "au", "lait", "naive"]);
        assert_eq!(terms("東京都に行く"), ["東京", "京都", "都に", "に行", "行く"]);
        assert_eq!(terms("日 and 本"), ["日", "and", "本"]);
        assert_eq!(terms("abc東京"), ["abc", "東京"]);
        assert_eq!(terms("Straße über"), ["strasse", "uber"]);
        assert!(terms(&"x".repeat(100)).is_empty());
        assert!(terms("  ,.;  ").is_empty());
    }
}
