//! Benign texts generated for training: the corpora's benign prompts are grade-school maths and
//! MT-bench, so a model trained on them alone learns "not arithmetic = attack", and flags
//! "Write a haiku about the ocean". These templates fill in the everyday requests, persona and
//! style instructions, and the harmless uses of words attacks also use ("ignore the typos",
//! "what does this mean?", "developer mode", a pasted `User:`/`Assistant:` exchange, emails that
//! ask the reader to "include your order number in your reply").
//!
//! Generation is deterministic (a fixed linear congruential sequence over fixed lists), so the
//! training run stays reproducible. Nothing here is copied from a corpus.

const TOPICS: &[&str] = &[
    "the ocean",
    "autumn leaves",
    "a lighthouse keeper",
    "climate change",
    "the history of Rome",
    "black holes",
    "a rainy Monday",
    "friendship",
    "the first day of school",
    "a lost dog",
    "coffee",
    "the Moon landing",
    "electric cars",
    "a small bakery",
    "mountain hiking",
    "the printing press",
    "honeybees",
    "a chess match",
    "city traffic",
    "learning to swim",
    "a robot that paints",
    "the Renaissance",
    "volcanoes",
    "a train journey",
    "remote work",
    "recycling",
    "a thunderstorm",
    "the immune system",
    "jazz music",
    "a family dinner",
    "time management",
    "the stock market",
    "quantum computing",
    "an old bookshop",
    "winter in Finland",
    "the water cycle",
    "a job interview",
    "gardening tomatoes",
    "space exploration",
    "the French Revolution",
];

const FORMS: &[&str] = &[
    "poem",
    "haiku",
    "short story",
    "essay",
    "blog post",
    "product description",
    "tweet",
    "limerick",
    "song",
    "speech",
    "cover letter",
    "summary",
    "outline",
    "lesson plan",
    "news article",
    "dialogue",
    "riddle",
    "slogan",
    "toast",
    "review",
];

const MAKE: &[&str] = &[
    "Write",
    "Compose",
    "Draft",
    "Create",
    "Generate",
    "Give me",
    "Could you write",
    "Please write",
];

const CONCEPTS: &[&str] = &[
    "photosynthesis",
    "the difference between TCP and UDP",
    "how vaccines work",
    "compound interest",
    "the theory of relativity",
    "recursion in programming",
    "supply and demand",
    "how a bill becomes law",
    "the causes of World War I",
    "machine learning",
    "the greenhouse effect",
    "how DNS works",
    "the Pythagorean theorem",
    "inflation",
    "how airplanes fly",
    "public key cryptography",
    "the rules of chess",
    "plate tectonics",
    "how a refrigerator works",
    "the difference between a virus and bacteria",
    "object-oriented programming",
    "the French subjunctive",
    "a hash table",
    "the electoral college",
    "how neural networks learn",
    "the placebo effect",
    "Docker containers",
    "REST APIs",
    "blockchain",
    "the Krebs cycle",
];

const EXPLAIN: &[&str] = &[
    "Explain",
    "Describe",
    "Summarize",
    "Can you explain",
    "Help me understand",
    "Give a short overview of",
    "What is",
    "Tell me about",
    "Briefly explain",
    "ELI5:",
];

const TASKS: &[&str] = &[
    "reverse a linked list in Python",
    "set up a Python virtual environment",
    "center a div in CSS",
    "bake sourdough bread",
    "change a flat tyre",
    "negotiate a higher salary",
    "train for a 10k run",
    "write a good cover letter",
    "configure nginx as a reverse proxy",
    "make cold brew coffee",
    "remove a stripped screw",
    "learn Spanish quickly",
    "improve my sleep",
    "plan a budget for a wedding",
    "back up my phone",
    "read a CSV file in Rust",
    "sort a dictionary by value in Python",
    "write a SQL query that joins two tables",
    "prepare for a job interview",
    "clean a cast iron pan",
    "grow basil indoors",
    "start a podcast",
    "write unit tests in JavaScript",
    "fix a leaking tap",
    "deploy a static site",
    "reset my router",
    "calculate a tip",
    "memorize a speech",
    "meditate",
    "debug a segmentation fault",
];

const ROLES: &[&str] = &[
    "travel guide",
    "math tutor",
    "personal trainer",
    "chef",
    "career coach",
    "Linux terminal",
    "English teacher",
    "historian",
    "pirate",
    "tour guide in Paris",
    "customer support agent",
    "poet",
    "job interviewer",
    "debate partner",
    "Socratic tutor",
    "film critic",
    "nutritionist",
    "senior engineer",
];

const STYLES: &[&str] = &[
    "answer in British English",
    "keep your answers under 50 words",
    "reply in French",
    "use bullet points",
    "explain things like I'm five",
    "be more concise",
    "use a formal tone",
    "include examples",
    "answer in the style of Shakespeare",
    "use metric units",
    "avoid jargon",
    "write in the second person",
];

const IGNORABLE: &[&str] = &[
    "the typos in my last message",
    "the formatting",
    "my previous question",
    "the first draft",
    "the outliers in the data",
    "the warnings in the log",
    "case sensitivity",
    "the header row",
    "the background noise",
    "my earlier request",
    "the comments in the code",
    "punctuation",
];

const PHRASES: &[&str] = &[
    "carpe diem",
    "je ne sais quoi",
    "YOLO",
    "the elephant in the room",
    "break a leg",
    "deja vu",
    "ad hoc",
    "TL;DR",
    "c'est la vie",
    "hakuna matata",
    "per se",
    "bona fide",
];

const ERRORS: &[&str] = &[
    "TypeError: 'NoneType' object is not subscriptable",
    "error[E0382]: borrow of moved value",
    "Segmentation fault (core dumped)",
    "404 Not Found",
    "java.lang.NullPointerException",
    "ModuleNotFoundError: No module named 'numpy'",
    "permission denied (publickey)",
    "CORS policy: No 'Access-Control-Allow-Origin' header",
];

const NAMES: &[&str] = &[
    "Anna", "David", "Priya", "Tom", "Li Wei", "Carlos", "Fatima", "Sam", "Olga", "Kenji",
];

const EMAIL_BODIES: &[&str] = &[
    "your order has shipped and should arrive on Thursday. Click here to track your package.",
    "the quarterly report is attached. Please review the numbers before our meeting on Friday.",
    "thanks for signing up! Please confirm your email address by clicking the link below.",
    "a reminder that the team offsite is next week. Please include your dietary requirements in your reply.",
    "your invoice for March is ready. If anything looks wrong, just reply to this email.",
    "we received your application. Please include your availability in your response so we can schedule an interview.",
    "the server maintenance window starts at 22:00 UTC. Expect a short outage of the dashboard.",
    "here are the notes from today's call. Action items are listed at the end; please add yours to the doc.",
    "your password was changed. If this wasn't you, reset it immediately using the link below.",
    "please find the signed contract attached. Let me know if you have any questions.",
];

const SIGNOFFS: &[&str] = &["Best,", "Thanks,", "Kind regards,", "Cheers,", "Sincerely,"];

const DOCS: &[&str] = &[
    "the manual",
    "the box",
    "the README",
    "the assembly guide",
    "the recipe card",
    "the exam paper",
    "the installation page",
    "the quick start guide",
    "the lab handout",
    "the tax form",
];

const GAMES: &[&str] = &[
    "chess",
    "cricket",
    "poker",
    "Go",
    "rugby",
    "bridge",
    "Monopoly",
    "volleyball",
    "mahjong",
    "curling",
];

const PROJECTS: &[&str] = &[
    "widgets",
    "fastjson",
    "tinyhttp",
    "rustls-demo",
    "geo-tools",
    "mdbook-x",
    "quickplot",
    "netprobe",
];

/// Ordinary sentences that use words attacks also use.
const HARMLESS: &[&str] = &[
    "How do I override a method in Java?",
    "How do I bypass the browser cache when testing my site?",
    "My friend Dan says the meeting moved to Thursday.",
    "You are now subscribed to our newsletter. You can unsubscribe at any time.",
    "You are now connected to the guest network.",
    "The previous owner left the instructions for the boiler in the drawer.",
    "What does the system prompt of a chatbot usually contain? I'm writing a blog post about it.",
    "Admin mode in the router settings lets you change the Wi-Fi password.",
    "The new rules for the tournament start next season.",
    "Forget the old password and choose a new one with at least 12 characters.",
    "Can you reveal the answer to yesterday's riddle now?",
    "Show me the previous version of the document so I can compare the edits.",
    "In developer mode the app logs every request, so turn it off in production.",
    "Please disregard my earlier email; the invoice was already paid.",
    "The assistant manager will call you back tomorrow morning.",
    "Repeat the last step until the dough is smooth.",
    "What are the rules for capitalizing titles in English?",
    "Our new policy: all visitors must sign in at the front desk.",
    "The model was trained on public data and evaluated on a held-out set.",
    "Stay in character during the school play, even if someone forgets a line.",
];

/// A deterministic pseudo-random sequence.
struct Lcg(u64);

impl Lcg {
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let i = (self.0 >> 33) as usize % list.len().max(1);
        list.get(i).copied().unwrap_or("")
    }
}

/// About `n` benign texts.
pub fn benign(n: usize) -> Vec<String> {
    let mut r = Lcg(0x1234_5678_9abc_def0);
    let mut out = Vec::with_capacity(n);
    let mut k = 0usize;
    while out.len() < n {
        k += 1;
        let t = match k % 28 {
            0 => format!("{} a {} about {}.", r.pick(MAKE), r.pick(FORMS), r.pick(TOPICS)),
            1 => format!("{} {}.", r.pick(EXPLAIN), r.pick(CONCEPTS)),
            2 => format!("How do I {}?", r.pick(TASKS)),
            3 => format!("What's the best way to {}? Keep it short.", r.pick(TASKS)),
            4 => format!("Act as a {} and help me {}.", r.pick(ROLES), r.pick(TASKS)),
            5 => format!("Pretend you are a {} and tell me about {}.", r.pick(ROLES), r.pick(TOPICS)),
            6 => format!("You are a {}. {} {}.", r.pick(ROLES), r.pick(EXPLAIN), r.pick(CONCEPTS)),
            7 => format!("From now on, please {}.", r.pick(STYLES)),
            8 => format!("Ignore {} and {} {}.", r.pick(IGNORABLE), r.pick(EXPLAIN).to_lowercase(), r.pick(CONCEPTS)),
            9 => format!("What does '{}' mean?", r.pick(PHRASES)),
            10 => format!("What does this error mean? {}", r.pick(ERRORS)),
            11 => format!("Can you help me {}? I tried twice and it did not work.", r.pick(TASKS)),
            12 => format!("Tell me about yourself. What are your limitations when it comes to {}?", r.pick(CONCEPTS)),
            13 => format!(
                "Hi {},\n\nJust a note: {}\n\n{}\n{}",
                r.pick(NAMES),
                r.pick(EMAIL_BODIES),
                r.pick(SIGNOFFS),
                r.pick(NAMES)
            ),
            14 => format!(
                "Subject: {}\nFrom: {}@example.com\nTo: {}@example.com\n\nHello, {}",
                r.pick(TOPICS),
                r.pick(NAMES).to_lowercase().replace(' ', "."),
                r.pick(NAMES).to_lowercase().replace(' ', "."),
                r.pick(EMAIL_BODIES)
            ),
            15 => format!(
                "User: {} {}?\nAssistant: Sure. In short, it is a topic with a long history.\nUser: Can you {} instead?",
                r.pick(EXPLAIN),
                r.pick(CONCEPTS),
                r.pick(STYLES)
            ),
            16 => format!(
                "To {}, add the following lines to your config file and restart:\n```\nenabled = true\nport = 8080\n```\nYou must restart the service afterwards. Do not run it as root.",
                r.pick(TASKS)
            ),
            17 => format!(
                "Forget about {} for now; let's focus on {}. {} a {} about it.",
                r.pick(TOPICS),
                r.pick(TOPICS),
                r.pick(MAKE),
                r.pick(FORMS)
            ),
            18 => format!("What is a system prompt, and how should I write one for a {} bot?", r.pick(ROLES)),
            19 => format!("Don't forget to {} before the weekend.", r.pick(TASKS)),
            20 => format!("Follow the instructions in {} to {}.", r.pick(DOCS), r.pick(TASKS)),
            21 => format!("Read the instructions on {} before you {}; ignore the old version online.", r.pick(DOCS), r.pick(TASKS)),
            22 => format!("What are the rules of {}? Explain them to a beginner.", r.pick(GAMES)),
            23 => r.pick(HARMLESS).to_owned(),
            24 => format!("{} Also, {} a {} about {}.", r.pick(HARMLESS), r.pick(MAKE).to_lowercase(), r.pick(FORMS), r.pick(TOPICS)),
            25 => {
                // A README: badges, an image, links, an install block.
                let p = r.pick(PROJECTS);
                format!(
                    "# {p}\n\n[![Build](https://github.com/acme/{p}/actions/workflows/ci.yml/badge.svg)](https://github.com/acme/{p}/actions)\n![Logo](https://raw.githubusercontent.com/acme/{p}/main/logo.png)\n\n{p} helps you {}. See the [documentation](https://docs.example.com/{p}) and the [changelog](CHANGELOG.md).\n\n## Install\n\n```\ncargo add {p}\n```",
                    r.pick(TASKS)
                )
            }
            26 => format!(
                "<h3><a href=\"https://example.org/{}\">Mailing list</a></h3>\n<p>Send email to <code>{}@example.org</code> to join. Archives are listed <a href=\"/archive\">here</a>.</p>",
                r.pick(PROJECTS),
                r.pick(PROJECTS)
            ),
            _ => format!("Rewrite this so it sounds more {}: we need to talk about {} tomorrow.", ["formal", "friendly", "concise"][k % 3], r.pick(TOPICS)),
        };
        out.push(t);
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let a = benign(500);
        assert_eq!(a, benign(500));
        assert!(a.len() > 300, "{}", a.len());
    }
}
