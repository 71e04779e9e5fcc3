//! User-defined rules from the policy: keyword lists and regexes.
//!
//! Keyword lists compile into one Aho-Corasick automaton per rule and match on the folded view,
//! so `Project Falcon`, `PROJECT ＦＡＬＣＯＮ` and `proj\u{200B}ect falcon` are the same. Regexes
//! match the original text with the `regex` crate, whose engines run in time linear in the input.
//! Both are user-supplied, so every size is capped by [`CustomLimits`] and a rule over a cap is
//! refused when the policy is compiled, never at request time.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};

use crate::{Detector, DetectorId, Finding, Normalized, Severity, Span};

/// Caps on user-supplied patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomLimits {
    /// Longest regex source accepted, in bytes.
    pub max_regex_len: usize,
    /// Most memory a compiled regex may take, in bytes.
    pub regex_size_limit: usize,
    /// Deepest nesting of groups and repetitions in a regex.
    pub regex_nest_limit: u32,
    /// Most keywords in one rule.
    pub max_keywords: usize,
    /// Longest keyword, in bytes.
    pub max_keyword_len: usize,
}

impl Default for CustomLimits {
    fn default() -> Self {
        CustomLimits {
            max_regex_len: 2048,
            regex_size_limit: 1 << 20,
            regex_nest_limit: 32,
            max_keywords: 10_000,
            max_keyword_len: 256,
        }
    }
}

/// What a custom rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomPattern {
    /// Any of these words or phrases, case- and confusable-insensitive.
    Keywords {
        /// The words or phrases.
        words: Vec<String>,
        /// Only match at word boundaries.
        whole_words: bool,
    },
    /// A regular expression (Rust `regex` syntax) over the original text.
    Regex {
        /// The pattern.
        pattern: String,
    },
}

/// A rule as the policy states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRule {
    /// The rule's name; it becomes the finding's kind.
    pub name: String,
    /// Severity of a match.
    pub severity: Severity,
    /// What it matches.
    pub pattern: CustomPattern,
}

/// Why a custom rule was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CustomError {
    /// The regex did not compile, or compiled over the size or nesting limits.
    #[error("rule `{rule}`: invalid regex: {message}")]
    Regex {
        /// The rule's name.
        rule: String,
        /// What the regex compiler said.
        message: String,
    },
    /// A pattern or list is longer than the limits allow.
    #[error("rule `{rule}`: {what} is {actual}, over the limit of {limit}")]
    TooLarge {
        /// The rule's name.
        rule: String,
        /// What was measured.
        what: &'static str,
        /// Its size.
        actual: usize,
        /// The cap.
        limit: usize,
    },
    /// A keyword rule with no keywords, or an empty keyword.
    #[error("rule `{rule}`: {what}")]
    Empty {
        /// The rule's name.
        rule: String,
        /// What was empty.
        what: &'static str,
    },
}

#[derive(Debug)]
enum Compiled {
    Keywords {
        automaton: AhoCorasick,
        whole_words: bool,
    },
    Regex(Regex),
}

#[derive(Debug)]
struct CompiledRule {
    name: String,
    severity: Severity,
    matcher: Compiled,
}

/// The `custom` detector: the policy's keyword lists and regexes.
#[derive(Debug, Default)]
pub struct CustomDetector {
    rules: Vec<CompiledRule>,
}

impl CustomDetector {
    /// Compiles `rules`, refusing any over `limits`.
    pub fn new(rules: &[CustomRule], limits: &CustomLimits) -> Result<Self, CustomError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            compiled.push(compile(rule, limits)?);
        }
        Ok(CustomDetector { rules: compiled })
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Checks one regex against `limits` and compiles it. Shared with every other place that accepts
/// a user regex, so that all of them enforce the same caps.
pub fn compile_regex(
    rule: &str,
    pattern: &str,
    limits: &CustomLimits,
) -> Result<Regex, CustomError> {
    if pattern.len() > limits.max_regex_len {
        return Err(CustomError::TooLarge {
            rule: rule.to_owned(),
            what: "the regex length in bytes",
            actual: pattern.len(),
            limit: limits.max_regex_len,
        });
    }
    RegexBuilder::new(pattern)
        .size_limit(limits.regex_size_limit)
        .dfa_size_limit(limits.regex_size_limit)
        .nest_limit(limits.regex_nest_limit)
        .build()
        .map_err(|e| CustomError::Regex {
            rule: rule.to_owned(),
            message: e.to_string(),
        })
}

fn compile(rule: &CustomRule, limits: &CustomLimits) -> Result<CompiledRule, CustomError> {
    let matcher = match &rule.pattern {
        CustomPattern::Regex { pattern } => {
            Compiled::Regex(compile_regex(&rule.name, pattern, limits)?)
        }
        CustomPattern::Keywords { words, whole_words } => {
            if words.is_empty() {
                return Err(CustomError::Empty {
                    rule: rule.name.clone(),
                    what: "the keyword list is empty",
                });
            }
            if words.len() > limits.max_keywords {
                return Err(CustomError::TooLarge {
                    rule: rule.name.clone(),
                    what: "the number of keywords",
                    actual: words.len(),
                    limit: limits.max_keywords,
                });
            }
            let mut folded = Vec::with_capacity(words.len());
            for w in words {
                if w.len() > limits.max_keyword_len {
                    return Err(CustomError::TooLarge {
                        rule: rule.name.clone(),
                        what: "a keyword's length in bytes",
                        actual: w.len(),
                        limit: limits.max_keyword_len,
                    });
                }
                let f = crate::normalize::fold(w.trim());
                if f.is_empty() {
                    return Err(CustomError::Empty {
                        rule: rule.name.clone(),
                        what: "a keyword is empty",
                    });
                }
                folded.push(f);
            }
            let automaton = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&folded)
                .map_err(|e| CustomError::Regex {
                    rule: rule.name.clone(),
                    message: e.to_string(),
                })?;
            Compiled::Keywords {
                automaton,
                whole_words: *whole_words,
            }
        }
    };
    Ok(CompiledRule {
        name: rule.name.clone(),
        severity: rule.severity,
        matcher,
    })
}

fn is_word_byte(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b >= 0x80)
}

impl Detector for CustomDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Custom
    }

    fn detect(&self, input: &Normalized<'_>, out: &mut Vec<Finding>) {
        for rule in &self.rules {
            match &rule.matcher {
                Compiled::Regex(re) => {
                    for m in re.find_iter(input.original()) {
                        if m.start() == m.end() {
                            continue;
                        }
                        out.push(Finding::new(
                            DetectorId::Custom,
                            rule.name.clone(),
                            rule.severity,
                            1.0,
                            Span::new(m.start(), m.end()),
                        ));
                    }
                }
                Compiled::Keywords {
                    automaton,
                    whole_words,
                } => {
                    let folded = input.folded().as_bytes();
                    for m in automaton.find_iter(folded) {
                        if *whole_words
                            && (is_word_byte(m.start().checked_sub(1).and_then(|i| folded.get(i)))
                                || is_word_byte(folded.get(m.end())))
                        {
                            continue;
                        }
                        out.push(Finding::new(
                            DetectorId::Custom,
                            rule.name.clone(),
                            rule.severity,
                            1.0,
                            input.to_original(m.start(), m.end()),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NormalizeOptions;

    fn rule(name: &str, pattern: CustomPattern) -> CustomRule {
        CustomRule {
            name: name.into(),
            severity: Severity::High,
            pattern,
        }
    }

    #[test]
    fn keywords_match_folded_text_and_map_back() {
        let d = CustomDetector::new(
            &[rule(
                "codename",
                CustomPattern::Keywords {
                    words: vec!["Project Falcon".into()],
                    whole_words: true,
                },
            )],
            &CustomLimits::default(),
        )
        .unwrap_or_default();
        let text = "see PROJECT ＦＡＬＣＯＮ and projectfalcon";
        let mut out = Vec::new();
        d.detect(
            &Normalized::new(text, &NormalizeOptions::default()),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            &text[out[0].span.start..out[0].span.end],
            "PROJECT ＦＡＬＣＯＮ"
        );
        assert_eq!(out[0].kind, "codename");
    }

    #[test]
    fn invalid_and_oversized_regexes_are_refused() {
        let limits = CustomLimits::default();
        let bad = CustomDetector::new(
            &[rule(
                "bad",
                CustomPattern::Regex {
                    pattern: "(unclosed".into(),
                },
            )],
            &limits,
        );
        assert!(matches!(bad, Err(CustomError::Regex { .. })));
        let long = CustomDetector::new(
            &[rule(
                "long",
                CustomPattern::Regex {
                    pattern: "a".repeat(5000),
                },
            )],
            &limits,
        );
        assert!(matches!(long, Err(CustomError::TooLarge { .. })));
        let huge = CustomDetector::new(
            &[rule(
                "huge",
                CustomPattern::Regex {
                    pattern: r"\w{1000}\w{1000}\w{1000}".into(),
                },
            )],
            &limits,
        );
        assert!(matches!(huge, Err(CustomError::Regex { .. })), "{huge:?}");
    }
}
