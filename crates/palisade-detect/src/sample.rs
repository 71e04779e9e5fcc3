//! Deterministic sample inputs for benchmarks and tests: realistic mixed text of any size, and
//! adversarial patterns meant to expose super-linear behaviour (long runs of one character,
//! unclosed delimiters, endless near-matches).

/// Sentences of the kind an agent's traffic carries: prose, questions, code, JSON, a few URLs and
/// some personal data, so that every detector has something to look at.
const PARTS: &[&str] = &[
    "Summarise the attached quarterly report and list the three biggest risks. ",
    "The customer, Jane Doe, can be reached at jane.doe@example.com or +1 202-555-0143. ",
    "SELECT name, total FROM orders WHERE created_at > '2024-01-01' ORDER BY total DESC; ",
    "See https://docs.example.com/guide/install?version=2.1#linux for the install steps. ",
    "{\"role\": \"user\", \"content\": \"What is the capital of France?\"} ",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "Our office moved to 42 Harbour Street; the new phone line opens on Monday. ",
    "Card on file ends in 4242; the invoice number is INV-2024-00917. ",
    "If the build fails, run `cargo clean` and try again with --release. ",
    "The model answered in 230 ms with 512 tokens, which is within budget. ",
    "Please translate this paragraph into German and keep the formatting intact. ",
    "Meeting notes: agreed on the roadmap, Bob owns the migration, review on 3 May. ",
];

/// A deterministic text of exactly `size` bytes (ASCII) made of [`PARTS`].
pub fn realistic_text(size: usize) -> String {
    let mut out = String::with_capacity(size + 128);
    let mut i = 0usize;
    while out.len() < size {
        out.push_str(PARTS[i % PARTS.len()]);
        i = i.wrapping_mul(7).wrapping_add(5) % 1009;
    }
    out.truncate(size);
    out
}

/// Adversarial inputs of about `size` bytes each, named.
pub fn adversarial_inputs(size: usize) -> Vec<(&'static str, String)> {
    let rep = |unit: &str| unit.repeat(size / unit.len().max(1) + 1);
    vec![
        ("one_char", "a".repeat(size)),
        ("digits", "7".repeat(size)),
        ("digit_groups", rep("1234 ")),
        ("base64_run", rep("QUJD")),
        ("hex_run", rep("41")),
        ("percent", rep("%41")),
        ("html_entities", rep("&lt;")),
        ("ampersands", rep("&")),
        ("at_signs", rep("a@")),
        ("dots", rep("a.")),
        ("open_brackets", rep("![[(")),
        ("angle_brackets", rep("<a ")),
        ("quotes", rep("'\"")),
        ("urls", rep("http://a")),
        ("equals", rep("password=")),
        ("braces", rep("{{")),
        ("dollar_braces", rep("${")),
        ("sql_words", rep("select union ")),
        ("slashes", rep("../")),
        ("zero_width", rep("a\u{200B}")),
        ("tags", rep("\u{E0041}")),
        ("combining", rep("e\u{0301}\u{0302}")),
        ("cyrillic", rep("аеорсух ")),
        ("newlines", rep("\n")),
        ("ignore_repeated", rep("ignore ")),
    ]
}
