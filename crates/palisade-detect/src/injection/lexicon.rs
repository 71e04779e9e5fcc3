//! Word classes: the vocabulary the phrase rules are written in.
//!
//! A rule says "an override verb, then within a few words a word for instructions", not "ignore
//! all previous instructions", so one rule covers `disregard the prior guidance`, `forget your
//! rules` and `vergiss alle Anweisungen`. Each class is a bit; a word can be in several classes.
//! Words are looked up by the hash the tokenizer gives them, in an open-addressing table built
//! once, so classifying a word costs one or two probes and no string comparison.
//!
//! The lists hold inflections explicitly (no stemmer: a stemmer would be slower and would merge
//! words the rules must keep apart, like `model` and `modeling`). A few German, French, Spanish,
//! Italian and Portuguese words join the override classes because "ignore the instructions above"
//! is among the first things attackers translate.

use std::sync::LazyLock;

use super::tokens::word_hash;

/// A set of classes, one bit each.
pub type Class = u64;

macro_rules! classes {
    ($($name:ident = $bit:expr;)*) => {
        $(#[allow(missing_docs)] pub const $name: Class = 1 << $bit;)*
        /// Class names, for the rule compiler.
        pub const NAMES: &[(&str, Class)] = &[$((stringify!($name), $name)),*];
    };
}

classes! {
    OVR = 0;
    NEG = 1;
    FOLLOW = 2;
    PRIOR = 3;
    ALLANY = 4;
    DIRECTIVE = 5;
    CONTENTN = 6;
    YOU = 7;
    AI = 8;
    EXTRACT = 9;
    SYSADJ = 10;
    SYSNOUN = 11;
    ROLE = 12;
    ROLE_STRONG = 13;
    SPECIAL = 14;
    ENC = 15;
    DECODE = 16;
    OUTPUT = 17;
    IMPER = 18;
    RESPNOUN = 19;
    WHEN = 20;
    PROCESS = 21;
    THEN = 22;
    NOTE = 23;
    SENSITIVE = 24;
    HTMLTAG = 25;
    HEADER = 26;
    RESTRICT = 27;
    ETHIC = 28;
    REFUSE = 29;
    GRANDMA = 30;
    COMMON = 31;
    NATO = 32;
    ARTICLE = 33;
    PERSONA = 34;
    FREE = 35;
    MODE = 36;
    HARM = 37;
    FOLLOWING = 38;
    SNIPPET = 39;
    ABOVE = 40;
    SAID = 41;
    EVERYTHING = 42;
    NEWADJ = 43;
    TASKN = 44;
    CONVO = 45;
    ANCHOR = 46;
    WORKNOUN = 47;
    TASKVERB = 48;
}

/// (class, words). Words are lower-case, without apostrophes.
const WORDS: &[(Class, &str)] = &[
    (OVR, "ignore ignoring ignored ignores disregard disregarding disregarded forget forgetting forgot \
           bypass bypassing override overriding overlook neglect abandon discard dismiss nevermind \
           ignoriere ignorieren ignoriert vergiss vergessen vergesse missachte ignorez ignorer oubliez oublie oublier \
           ignora ignorar ignoren olvida olvide olviden olvidar dimentica dimenticate ignorate esqueca esquece"),
    (NEG, "not dont never cannot cant shouldnt wont doesnt didnt no nicht nie pas jamais"),
    (FOLLOW, "follow obey listen comply adhere abide heed respect"),
    (PRIOR, "previous prior above earlier preceding former foregoing aforementioned initial original existing \
             preset old other rest remaining before prev vorherigen vorherige vorigen obigen bisherigen \
             vorangegangenen precedentes precedente anterieures anteriores anterior previas precedenti"),
    (ALLANY, "all any every each alle alles allen toutes tous tout todas todos todo tutte tutti"),
    (DIRECTIVE, "instruction instructions directions direction rules rule prompt prompts guidelines guideline \
                 orders commands command guidance constraints restrictions programming directives directive \
                 policies policy safeguards filters guardrails limitations conditioning training tasks task \
                 anweisungen anweisung befehle regeln vorgaben consignes regles instrucciones reglas indicaciones \
                 istruzioni regole instrucoes"),
    (CONTENTN, "content contents text data document documents input inputs information context messages message \
                conversation said"),
    (YOU, "you your yourself youre u ur"),
    (AI, "ai assistant assistants llm llms chatbot chatbots bot bots agent agents gpt chatgpt claude gemini \
          copilot bard llama mistral summarizer summariser automated"),
    (EXTRACT, "reveal show print display output repeat tell give leak share dump disclose recite write list \
               provide expose spell echo paste copy return reproduce state type"),
    (SYSADJ, "system initial hidden secret internal developer confidential private pre preprompt meta"),
    (SYSNOUN, "prompt prompts instructions instruction message messages rules configuration config guidelines \
               directives context preprompt"),
    (ROLE, "system user human assistant ai bot gpt chatgpt model admin administrator developer root sudo operator \
            instruction instructions inst sys"),
    (ROLE_STRONG, "system admin administrator developer root sudo operator sys"),
    (SPECIAL, "im_start im_end endoftext eot_id start_header_id end_header_id begin_of_text end_of_text \
               start_of_turn end_of_turn eos bos eot fim_prefix fim_suffix fim_middle endofprompt"),
    (ENC, "base64 base32 base16 base85 ascii85 hex hexadecimal rot13 rot morse braille atbash caesar cipher \
           binary nato leetspeak leet uuencode uuencoded uu mime zalgo ecoji base2048 encoded encoding encrypted \
           ciphertext ciphered obfuscated quoted printable punycode unicode reversed backwards"),
    (DECODE, "decode decoded decoding decipher deciphered decrypt decrypted decode_this translate convert \
              interpret unscramble"),
    (OUTPUT, "print say output respond reply write type answer repeat return display echo state print_this \
              prints says"),
    (IMPER, "include add incorporate integrate insert embed append use mention suggest recommend provide write \
             render blend meld fuse weave engage replace ensure remember utilize utilise place put attach merge \
             inject implement apply employ introduce infuse combine run execute tell inform advise ask encourage \
             urge promote invite direct redirect send forward make modify enhance augment enrich conclude finish \
             format structure rewrite tailor craft frame wrap close sign keep spice supplement adjust alter \
             change"),
    (TASKVERB, "explain describe compose create draft summarize summarise list translate suggest recommend give \
                tell write generate outline discuss compare define name identify calculate solve design plan \
                provide share show offer propose teach"),
    (RESPNOUN, "response responses answer answers output outputs summary summaries solution \
                translation completion reasoning explanation analysis feedback recommendation"),
    (WORKNOUN, "code codebase implementation program script essay letter post text content message result \
                results project app application"),
    (WHEN, "when while after before whenever once"),
    (PROCESS, "summarizing summarising summarize summarise answering responding reading processing translating \
               analyzing analysing reviewing generating writing replying parsing evaluating assessing \
               summarizes summarises processes reads analyzes analyses answers"),
    (THEN, "also instead additionally furthermore secretly silently quietly always"),
    (NOTE, "note message instructions instruction reminder attention notice memo directive request warning \
            hint notes"),
    (SENSITIVE, "conversation chat history summary email emails password passwords secret secrets credentials \
                 credential key keys token tokens ssn address data code info information messages message \
                 cookies cookie session"),
    (HTMLTAG, "div p span html body head td tr th table a br li ul ol h1 h2 h3 h4 img form input section \
               article header footer nav"),
    (HEADER, "subject from to cc bcc date sent received email_from reply_to"),
    (RESTRICT, "restrictions limitations limits filters censorship boundaries rules guidelines morals ethics \
                constraints safeguards guardrails regulations"),
    (ETHIC, "ethical moral ethics morals safety legal"),
    (REFUSE, "refuse refuses refusing decline declines deny denies reject"),
    (GRANDMA, "grandma grandmother granny grandpa grandfather nana gran grandmom"),
    (COMMON, "the of and to a in is you that it he was for on are as with his they i at be this have from or \
              one had by word but not what all were we when your can said there use an each which she do how \
              their if will up other about out many then them these so some her would make like him into time \
              has look two more write go see number no way could people my than first been call who its now \
              find long down day did get come made may part me please tell just only here must should \
              does any"),
    (NATO, "alfa alpha bravo charlie delta echo foxtrot golf hotel india juliet juliett kilo lima mike november \
            oscar papa quebec romeo sierra tango uniform victor whiskey whisky xray yankee zulu"),
    (ARTICLE, "a an the"),
    (PERSONA, "dan stan dude aim evil unrestricted unfiltered uncensored jailbroken jailbreak amoral"),
    (FREE, "free freed unbound unchained liberated released"),
    (MODE, "mode modus"),
    (HARM, "illegal unethical harmful dangerous immoral offensive explicit inappropriate malicious"),
    (FOLLOWING, "following subsequent below attached provided given"),
    (SNIPPET, "code snippet link url text message line lines script command block excerpt sentence paragraph \
               phrase statement function"),
    (ABOVE, "above before prior previously earlier preceding beforehand davor vorher zuvor"),
    (SAID, "said told written wrote say know knew learned learnt heard been"),
    (EVERYTHING, "everything anything all that whatever alles tout todo"),
    (NEWADJ, "new updated revised real actual true different additional override priority urgent secret \
              hidden important"),
    (TASKN, "instructions instruction task objective directive directives rules orders mission goal role \
             job purpose assignment"),
    (CONVO, "conversation chat discussion session dialogue dialog thread"),
];

/// Size of the lookup table (a power of two, about four times the number of distinct words).
const TABLE: usize = 4096;

/// The word-class table: two-choice cuckoo hashing, so a lookup reads two fixed slots and
/// selects without branching on hit or miss (word lookups are half hits, half misses, which a
/// branch predictor cannot learn).
#[derive(Debug)]
pub struct Lexicon {
    /// `(key, classes)` side by side: a lookup touches one cache line a slot, not two.
    slots: Vec<(u64, Class)>,
}

#[inline]
fn slots(hash: u64) -> (usize, usize) {
    (
        (hash as usize) & (TABLE - 1),
        ((hash >> 40) as usize) & (TABLE - 1),
    )
}

static LEXICON: LazyLock<Lexicon> = LazyLock::new(|| {
    let mut words: std::collections::BTreeMap<u64, Class> = std::collections::BTreeMap::new();
    let mut add = |h: u64, c: Class| *words.entry(h.max(1)).or_default() |= c;
    for (class, list) in WORDS {
        for w in list.split_whitespace() {
            add(word_hash(w), *class);
        }
    }
    // Words that start a rule are marked, so that the rule matcher can skip every other word
    // with one test.
    for w in super::rules::first_words() {
        add(word_hash(w), ANCHOR);
    }
    let mut lex = Lexicon {
        slots: vec![(0, 0); TABLE],
    };
    for (h, c) in words {
        lex.insert(h, c);
    }
    lex
});

impl Lexicon {
    fn insert(&mut self, mut hash: u64, mut class: Class) {
        let mut from = usize::MAX;
        for _ in 0..TABLE {
            let (a, b) = slots(hash);
            for s in [a, b] {
                if self.slots.get(s).is_some_and(|e| e.0 == 0) {
                    self.slots[s] = (hash, class);
                    return;
                }
            }
            // Both taken: evict the occupant of the slot this word did not come from, and place
            // the evicted word next.
            let victim = if from == a { b } else { a };
            std::mem::swap(&mut self.slots[victim].0, &mut hash);
            std::mem::swap(&mut self.slots[victim].1, &mut class);
            from = victim;
        }
        // Unreachable at this load factor; a word that cannot be placed simply has no class
        // (the test `every_word_found_its_place` guards it).
    }

    /// The classes of the word with hash `hash` (0 when it is in none).
    #[inline]
    pub fn classes(&self, hash: u64) -> Class {
        let hash = hash.max(1);
        let (a, b) = slots(hash);
        let hit = |s: usize| -> Class {
            let (k, c) = self.slots.get(s).copied().unwrap_or((0, 0));
            c & (u64::from(k == hash)).wrapping_neg()
        };
        hit(a) | hit(b)
    }
}

/// The table (built on first use).
pub fn get() -> &'static Lexicon {
    &LEXICON
}

/// The classes of the word with hash `hash` (0 when it is in none).
#[inline]
pub fn classes(hash: u64) -> Class {
    LEXICON.classes(hash)
}

/// The class named `name` (for rules written as `@NAME`).
pub fn by_name(name: &str) -> Option<Class> {
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_have_their_classes() {
        assert!(classes(word_hash("ignore")) & OVR != 0);
        assert!(classes(word_hash("instructions")) & DIRECTIVE != 0);
        assert!(classes(word_hash("instructions")) & SYSNOUN != 0);
        assert!(classes(word_hash("dont")) & NEG != 0);
        assert_eq!(classes(word_hash("banana")), 0);
        assert_eq!(by_name("OVR"), Some(OVR));
        assert_eq!(by_name("NOPE"), None);
    }

    #[test]
    fn every_word_found_its_place() {
        for (class, list) in WORDS {
            for w in list.split_whitespace() {
                assert!(classes(word_hash(w)) & class == *class, "{w}");
            }
        }
    }

    #[test]
    fn the_table_has_room() {
        let distinct: std::collections::HashSet<&str> = WORDS
            .iter()
            .flat_map(|(_, w)| w.split_whitespace())
            .collect();
        assert!(distinct.len() * 3 < TABLE, "{} words", distinct.len());
    }
}
