//! Glob patterns as the Python SDK matches them: `fnmatch.fnmatch` on POSIX
//! (case-sensitive; `*` matches any run of characters, `/` included; `?` one
//! character; `[abc]`, `[a-z]`, `[!abc]` one character of, or not of, a set;
//! a `[` without its `]` is itself). Plain data, no I/O.

/// One piece of a pattern.
#[derive(Debug)]
enum Token {
    Star,
    Any,
    Char(char),
    /// `[...]`: inclusive ranges (a single character is `(c, c)`), negated by `!`.
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Char(p) => *p == c,
            Token::Set { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

fn parse(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => {
                if !matches!(tokens.last(), Some(Token::Star)) {
                    tokens.push(Token::Star);
                }
            }
            '?' => tokens.push(Token::Any),
            '[' => {
                // As fnmatch.translate: an optional `!`, then a `]` right after
                // is a member; the set ends at the next `]`.
                let mut j = i + 1;
                let negated = p.get(j) == Some(&'!');
                if negated {
                    j += 1;
                }
                let start = j;
                if p.get(j) == Some(&']') {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    tokens.push(Token::Char('['));
                } else {
                    let members = &p[start..j];
                    let mut ranges = Vec::new();
                    let mut k = 0;
                    while k < members.len() {
                        if k + 2 < members.len() && members[k + 1] == '-' {
                            ranges.push((members[k], members[k + 2]));
                            k += 3;
                        } else {
                            ranges.push((members[k], members[k]));
                            k += 1;
                        }
                    }
                    tokens.push(Token::Set { negated, ranges });
                    i = j;
                }
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

/// Whether all of `name` matches `pattern` (Python's `fnmatch.fnmatch` on POSIX).
pub(crate) fn fnmatch(name: &str, pattern: &str) -> bool {
    let tokens = parse(pattern);
    let name: Vec<char> = name.chars().collect();
    // Greedy with backtracking to the last `*`: every other token takes
    // exactly one character, so this is linear in practice.
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
            }
            Some(tok) if tok.matches(name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    star = Some((st, sn + 1));
                    t = st + 1;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|tok| matches!(tok, Token::Star))
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    /// Each row as Python 3.11's `fnmatch.fnmatch(name, pattern)` answers it.
    #[test]
    fn matches_as_python_fnmatch() {
        for (name, pattern, expected) in [
            ("a.png", "*.png", true),
            ("images/a.png", "*.png", true),
            ("a.PNG", "*.png", false),
            ("a.png", "?.png", true),
            ("ab.png", "?.png", false),
            ("a.png", "[ab].png", true),
            ("c.png", "[!ab].png", true),
            ("b.png", "[!ab].png", false),
            ("x", "[a-z]", true),
            ("-", "[a-]", true),
            ("-", "[-a]", true),
            ("]", "[]]", true),
            ("]", "[!]]", false),
            ("a", "[!]]", true),
            ("[", "[", true),
            ("[a", "[a", true),
            ("a", "[z-a]", false),
            ("b", "[z-a]", false),
            ("^", "[^]", true),
            ("!", "[!]", false),
            ("a", "[!]", false),
            ("[!]", "[!]", true),
            ("", "*", true),
            ("", "?", false),
            ("a/b/c.pt", "**/*.pt", true),
            ("c.pt", "**/*.pt", false),
            ("x\ny", "x?y", true),
            ("a*b", "a[*]b", true),
            ("axb", "a[*]b", false),
            ("a\\b", "a\\b", true),
            ("a.b", "a.b", true),
            ("axb", "a.b", false),
            ("ab", "a*b*", true),
            ("abc", "a*c", true),
            ("abcd", "a*c", false),
            ("é", "?", true),
            ("é", "[é]", true),
            ("a", "[a-cx-z]", true),
            ("y", "[a-cx-z]", true),
            ("m", "[a-cx-z]", false),
            ("-", "[a-c-]", true),
            ("b", "[a-c-]", true),
            ("a", "[!a-c]", false),
            ("d", "[!a-c]", true),
        ] {
            assert_eq!(fnmatch(name, pattern), expected, "{name:?} {pattern:?}");
        }
    }
}
