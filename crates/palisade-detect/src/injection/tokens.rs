//! One pass over the folded text that both halves of the detector read: words with a hash, a
//! crude stem and their lexicon classes, plus the punctuation that touches each word.
//!
//! The rules match phrases over these tokens and the model sums weights over them, so the text is
//! walked once, no `String` is built per word, and a phrase such as "ignore all previous
//! instructions" costs the same to find as its first word. Punctuation is not a token of its own:
//! each word remembers the punctuation run just before and just after it (`<|` `im_start` `|>`,
//! `###` `system` `:`), which is all the delimiter rules and the model need.
//!
//! Leetspeak is undone per word while hashing (`1gn0r3` hashes as `ignore`) when a word mixes
//! letters with digits that are all leet digits; apostrophes are dropped (`don't` = `dont`).

use super::lexicon::{self, Class};

/// The word follows a sentence break (`.`, `!`, `?`, `;` or a newline) since the previous word.
pub const BREAK: u8 = 1;
/// The word is the first word on its line.
pub const BOL: u8 = 2;
/// The word is made of digits only.
pub const NUMBER: u8 = 4;
/// The word was written in leetspeak and hashed de-leeted.
pub const LEET: u8 = 8;

/// One word of the folded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// First byte in the folded text.
    pub start: u32,
    /// One past the last byte in the folded text.
    pub end: u32,
    /// Hash of the (de-leeted, apostrophe-free) word.
    pub hash: u64,
    /// Hash of its first five bytes when the word is at least seven long, else 0.
    pub stem: u64,
    /// Lexicon classes.
    pub class: Class,
    /// Up to the last four bytes of the punctuation run just before the word (spaces and tabs
    /// between are skipped, a newline is not), packed little-endian, 0 for none.
    pub pre: u32,
    /// Up to the first four bytes of the punctuation run just after the word, 0 for none.
    pub post: u32,
    /// [`BREAK`], [`BOL`], [`NUMBER`], [`LEET`].
    pub flags: u8,
}

impl Token {
    /// Whether `flag` is set.
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether the token is in any of `classes`.
    #[inline]
    pub fn is(&self, classes: Class) -> bool {
        self.class & classes != 0
    }
}

/// Longest word prefix that is hashed; longer words hash their first bytes only.
const MAX_HASHED: usize = 48;

const fn byte_classes() -> [u8; 256] {
    // 0 = space/tab, 1 = newline, 2 = word, 3 = sentence punctuation, 4 = other punctuation,
    // 5 = apostrophe, 6 = non-ASCII (decided per char).
    let mut t = [4u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b == b' ' || b == b'\t' || b == b'\r' || b == 0x0b || b == 0x0c {
            0
        } else if b == b'\n' {
            1
        } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'@' || b == b'$' {
            2
        } else if b == b'.' || b == b'!' || b == b'?' || b == b';' {
            3
        } else if b == b'\'' {
            5
        } else if b >= 0x80 {
            6
        } else if b < 0x20 {
            0
        } else {
            4
        };
        i += 1;
    }
    t
}

static BYTE_CLASS: [u8; 256] = byte_classes();

const fn leet_map() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t[b'0' as usize] = b'o';
    t[b'1' as usize] = b'i';
    t[b'3' as usize] = b'e';
    t[b'4' as usize] = b'a';
    t[b'5' as usize] = b's';
    t[b'7' as usize] = b't';
    t[b'@' as usize] = b'a';
    t[b'$' as usize] = b's';
    t
}

static LEET_MAP: [u8; 256] = leet_map();

const LETTER: u8 = 1;
const LEET_DIGIT: u8 = 2;
const OTHER_DIGIT: u8 = 4;

const fn char_kinds() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() {
            LETTER
        } else if matches!(b, b'0' | b'1' | b'3' | b'4' | b'5' | b'7' | b'@' | b'$') {
            LEET_DIGIT
        } else if b.is_ascii_digit() {
            OTHER_DIGIT
        } else {
            0
        };
        i += 1;
    }
    t
}

static CHAR_KIND: [u8; 256] = char_kinds();

/// Whether a word of letters and leet digits is leetspeak: at least two letters, and either two
/// leet characters or one inside a word of three letters or more (`m4ke`, not `4th` or `gpt4`).
fn should_deleet(word: &[u8]) -> bool {
    let (mut letters, mut leet, mut inner) = (0usize, 0usize, false);
    for (k, &b) in word.iter().enumerate() {
        if b.is_ascii_alphabetic() {
            letters += 1;
        } else if CHAR_KIND[b as usize] == LEET_DIGIT {
            leet += 1;
            inner |= k > 0 && k + 1 < word.len();
        }
    }
    letters >= 2 && (leet >= 2 || (leet == 1 && inner && letters >= 3))
}

/// A cheap finaliser: one multiply, with shifts so that both the high bits (model buckets) and
/// the low bits (lexicon slots) depend on every input bit.
#[inline]
pub fn mix(h: u64) -> u64 {
    let h = (h ^ (h >> 32)).wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^ (h >> 29)
}

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn lane(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    for (d, s) in w.iter_mut().zip(b) {
        *d = *s;
    }
    u64::from_le_bytes(w)
}

/// The canonical word hash: full 8-byte lanes folded in with a multiply each, then the last
/// partial lane (zero-padded) and the length.
#[inline]
fn hash_lanes(b: &[u8]) -> u64 {
    let b = &b[..b.len().min(MAX_HASHED)];
    let mut state = SEED;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        state = (state ^ lane(c)).wrapping_mul(SEED).rotate_left(29);
    }
    finish(state, lane(chunks.remainder()), b.len())
}

#[inline]
fn finish(state: u64, last: u64, len: usize) -> u64 {
    mix(state ^ last.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) ^ len as u64)
}

/// The stem feature of a word: its first five bytes, for words of seven bytes or more.
#[inline]
fn stem_of(first_lane: u64, len: usize) -> u64 {
    if len < 7 {
        return 0;
    }
    mix((first_lane & 0xff_ffff_ffff) ^ 0x5555_0000_0000_0000)
}

/// The hash a word gets in the token stream (lower-case ASCII, apostrophes dropped). Used to
/// build the lexicon, so it must agree with [`tokenize`].
pub fn word_hash(word: &str) -> u64 {
    let mut buf = [0u8; MAX_HASHED];
    let mut k = 0;
    for &b in word.as_bytes() {
        if b != b'\'' && k < MAX_HASHED {
            buf[k] = b.to_ascii_lowercase();
            k += 1;
        }
    }
    hash_lanes(&buf[..k])
}

#[inline]
fn pack_tail(bytes: &[u8]) -> u32 {
    let tail = &bytes[bytes.len().saturating_sub(4)..];
    tail.iter()
        .rev()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

#[inline]
fn pack_head(bytes: &[u8]) -> u32 {
    let head = &bytes[..bytes.len().min(4)];
    head.iter()
        .rev()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// Packs up to four ASCII bytes the way [`Token::pre`] and [`Token::post`] hold them.
pub const fn punct(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() && i < 4 {
        v |= (b[i] as u32) << (8 * i);
        i += 1;
    }
    v
}

/// Whether the non-ASCII char starting at `i` is part of a word (a letter or digit), and its
/// length in bytes.
#[inline]
fn non_ascii_at(s: &str, i: usize) -> (bool, usize) {
    match s.get(i..).and_then(|t| t.chars().next()) {
        Some(c) => (c.is_alphanumeric(), c.len_utf8()),
        None => (false, 1),
    }
}

/// Splits `folded` into word tokens, appending them to `out` (cleared first).
pub fn tokenize(folded: &str, out: &mut Vec<Token>) {
    out.clear();
    // About one word per six bytes of ordinary text.
    out.reserve(folded.len() / 5 + 4);
    let lex = lexicon::get();
    let bytes = folded.as_bytes();
    let n = bytes.len();
    let mut i = 0usize;
    // Punctuation seen since the last word: where its current run starts and ends.
    let mut punct_start = usize::MAX;
    let mut punct_end = 0usize;
    let mut brk = true;
    let mut bol = true;
    // A word was just read and only spaces followed it so far.
    let mut post_pending = false;
    while i < n {
        let c = BYTE_CLASS[bytes[i] as usize];
        let (is_word, clen) = match c {
            2 => (true, 1),
            6 => non_ascii_at(folded, i),
            _ => (false, 1),
        };
        if !is_word {
            match c {
                0 => {}
                1 => {
                    brk = true;
                    bol = true;
                    punct_start = usize::MAX;
                    if post_pending {
                        post_pending = false;
                        if let Some(last) = out.last_mut() {
                            last.post = u32::from(b'\n');
                        }
                    }
                }
                _ => {
                    if c == 3 {
                        brk = true;
                    }
                    if punct_start == usize::MAX || punct_end != i {
                        punct_start = i;
                    }
                    punct_end = i + clen;
                    // The previous word's trailing punctuation: the first run after it, if only
                    // spaces came between.
                    if post_pending {
                        post_pending = false;
                        if let Some(last) = out.last_mut() {
                            let end = n.min(i + 4);
                            let run: &[u8] = bytes.get(i..end).unwrap_or(&[]);
                            let stop = run
                                .iter()
                                .position(|b| matches!(BYTE_CLASS[*b as usize], 0..=2))
                                .unwrap_or(run.len());
                            last.post = pack_head(&run[..stop]);
                        }
                    }
                }
            }
            i += clen;
            continue;
        }
        // A word: find its end, noting what it is made of. The inner loop is the common case,
        // ASCII letters and digits; apostrophes and non-ASCII letters take the slow branch.
        let start = i;
        let mut kinds = 0u8;
        let mut apostrophe = false;
        let mut j = i;
        loop {
            while j < n && BYTE_CLASS[bytes[j] as usize] == 2 {
                kinds |= CHAR_KIND[bytes[j] as usize];
                j += 1;
            }
            let Some(&b) = bytes.get(j) else { break };
            let bc = BYTE_CLASS[b as usize];
            if bc == 5
                && j > start
                && bytes
                    .get(j + 1)
                    .is_some_and(|&x| BYTE_CLASS[x as usize] == 2)
            {
                apostrophe = true;
                j += 1;
            } else if bc == 6 {
                let (w, l) = non_ascii_at(folded, j);
                if !w {
                    break;
                }
                kinds |= LETTER;
                j += l;
            } else {
                break;
            }
        }
        let end = j.max(start + 1).min(n);
        let word = &bytes[start..end];
        let deleet = kinds & LEET_DIGIT != 0
            && kinds & (OTHER_DIGIT | LETTER) == LETTER
            && should_deleet(word);
        let (hash, stem) = if deleet || apostrophe {
            // Rare: copy the mapped bytes to the stack first.
            let mut buf = [0u8; MAX_HASHED];
            let mut k = 0;
            for &b in word {
                if b != b'\'' && k < MAX_HASHED {
                    buf[k] = if deleet { LEET_MAP[b as usize] } else { b };
                    k += 1;
                }
            }
            (hash_lanes(&buf[..k]), stem_of(lane(&buf[..k.min(8)]), k))
        } else if word.len() <= 7 {
            // The common case: one unaligned load, no loop.
            let l = match bytes.get(start..start + 8) {
                Some(eight) => lane(eight) & (u64::MAX >> (8 * (8 - word.len()))),
                None => lane(word),
            };
            (finish(SEED, l, word.len()), stem_of(l, word.len()))
        } else {
            (hash_lanes(word), stem_of(lane(&word[..8]), word.len()))
        };
        let letters = kinds & LETTER != 0;
        // Punctuation directly before the word (spaces and tabs between are allowed).
        let pre = if punct_start != usize::MAX
            && bytes[punct_end..start]
                .iter()
                .all(|b| BYTE_CLASS[*b as usize] == 0)
        {
            pack_tail(&bytes[punct_start..punct_end])
        } else {
            0
        };
        let mut flags = 0u8;
        if brk {
            flags |= BREAK;
        }
        if bol {
            flags |= BOL;
        }
        if !letters
            && kinds & (LEET_DIGIT | OTHER_DIGIT) != 0
            && word.iter().all(u8::is_ascii_digit)
        {
            flags |= NUMBER;
        }
        if deleet {
            flags |= LEET;
        }
        out.push(Token {
            start: start as u32,
            end: end as u32,
            hash,
            stem,
            class: lex.classes(hash),
            pre,
            post: 0,
            flags,
        });
        brk = false;
        bol = false;
        post_pending = true;
        punct_start = usize::MAX;
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        let mut v = Vec::new();
        tokenize(s, &mut v);
        v
    }

    fn words(s: &str) -> Vec<&str> {
        toks(s)
            .iter()
            .map(|t| &s[t.start as usize..t.end as usize])
            .collect()
    }

    #[test]
    fn splits_words_and_keeps_apostrophes_inside() {
        assert_eq!(
            words("don't stop, ok?  i_am here"),
            vec!["don't", "stop", "ok", "i_am", "here"]
        );
        assert_eq!(toks("don't")[0].hash, word_hash("dont"));
        assert_eq!(words("'quoted'"), vec!["quoted"]);
    }

    #[test]
    fn leetspeak_hashes_as_the_word() {
        assert_eq!(toks("1gn0r3")[0].hash, word_hash("ignore"));
        assert_eq!(toks("pr3v10us")[0].hash, word_hash("previous"));
        assert!(toks("pr3v10us")[0].has(LEET));
        // Ordinary words with digits are left alone.
        for w in ["gpt4", "h2o", "sha256", "1st", "mp3", "2024"] {
            assert!(!toks(w)[0].has(LEET), "{w}");
        }
    }

    #[test]
    fn punctuation_around_words() {
        let t = toks("<|im_start|>system\nhi");
        assert_eq!(t[0].pre, punct("<|"));
        assert_eq!(t[0].post, punct("|>"));
        assert!(!t[1].has(BOL) && t[2].has(BOL));
        let t = toks("hello.\n### System: x");
        assert_eq!(t[1].pre, punct("###"));
        assert_eq!(t[1].post, punct(":"));
        assert!(t[1].has(BOL) && t[1].has(BREAK));
        let t = toks("a [inst] b");
        assert_eq!((t[1].pre, t[1].post), (punct("["), punct("]")));
    }

    #[test]
    fn breaks_and_numbers() {
        let t = toks("one two. three 42");
        assert!(t[0].has(BREAK) && !t[1].has(BREAK) && t[2].has(BREAK));
        assert!(t[3].has(NUMBER));
    }

    #[test]
    fn non_ascii_letters_are_words_and_symbols_are_not() {
        assert_eq!(words("café → naïve"), vec!["café", "naïve"]);
        assert_eq!(words("这是 测试"), vec!["这是", "测试"]);
        assert!(words("→ ← ♥").is_empty());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "",
            "'",
            "''a",
            "a'",
            "\u{10ffff}",
            "x\u{0301}",
            "@@@",
            "$5",
            "........",
            "a\n\n\nb",
        ] {
            let _ = toks(s);
        }
    }
}
