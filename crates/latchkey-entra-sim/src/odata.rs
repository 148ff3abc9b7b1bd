//! OData query options as Graph applies them to directory objects: `$filter` parsing and evaluation,
//! `$select`, page sizes, and opaque skip tokens.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::json::parse_ts;

/// A property value as `$filter` sees it.
#[derive(Debug, Clone)]
pub(crate) enum PV<'a> {
    S(Cow<'a, str>),
    B(bool),
    T(i64),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Bool(bool),
    Null,
    /// A bare token: GUID, number or date-time.
    Bare(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Lit),
    In(String, Vec<Lit>),
    StartsWith(String, String),
    EndsWith(String, String),
    Any(String, String, Box<Expr>),
}

/// Why a `$filter` was refused: the message Graph sends with 400 `Request_UnsupportedQuery` / `BadRequest`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FilterError {
    Syntax(String),
    /// An operator that needs `ConsistencyLevel: eventual` + `$count=true`.
    NeedsAdvanced(&'static str),
    UnsupportedProperty(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Colon,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, FilterError> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    if i >= b.len() {
                        return Err(FilterError::Syntax("unterminated string literal".into()));
                    }
                    if b[i] == '\'' {
                        if i + 1 < b.len() && b[i + 1] == '\'' {
                            v.push('\'');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    v.push(b[i]);
                    i += 1;
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let digit = c.is_ascii_digit();
                let start = i;
                while i < b.len() {
                    let d = b[i];
                    let ok = d.is_ascii_alphanumeric()
                        || matches!(d, '_' | '.' | '/' | '@' | '$' | '-')
                        || (digit && matches!(d, ':' | '+'));
                    if !ok {
                        break;
                    }
                    i += 1;
                }
                if i == start {
                    return Err(FilterError::Syntax(format!("unexpected character '{c}'")));
                }
                out.push(Tok::Word(b[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn expect(&mut self, t: Tok) -> Result<(), FilterError> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(FilterError::Syntax(format!(
                "expected {t:?}, found {other:?}"
            ))),
        }
    }
    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut l = self.and()?;
        while self.peek_kw("or") {
            self.pos += 1;
            let r = self.and()?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut l = self.unary()?;
        while self.peek_kw("and") {
            self.pos += 1;
            let r = self.unary()?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.peek_kw("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }
    fn literal(&mut self) -> Result<Lit, FilterError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Word(w)) => Ok(match w.to_ascii_lowercase().as_str() {
                "true" => Lit::Bool(true),
                "false" => Lit::Bool(false),
                "null" => Lit::Null,
                _ => Lit::Bare(w),
            }),
            other => Err(FilterError::Syntax(format!(
                "expected a literal, found {other:?}"
            ))),
        }
    }
    fn primary(&mut self) -> Result<Expr, FilterError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                let lw = w.to_ascii_lowercase();
                if (lw == "startswith" || lw == "endswith") && self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    let path = match self.next() {
                        Some(Tok::Word(p)) => p,
                        other => {
                            return Err(FilterError::Syntax(format!(
                                "expected a property, found {other:?}"
                            )));
                        }
                    };
                    self.expect(Tok::Comma)?;
                    let lit = match self.literal()? {
                        Lit::Str(s) => s,
                        other => {
                            return Err(FilterError::Syntax(format!(
                                "expected a string, found {other:?}"
                            )));
                        }
                    };
                    self.expect(Tok::RParen)?;
                    return Ok(if lw == "startswith" {
                        Expr::StartsWith(path, lit)
                    } else {
                        Expr::EndsWith(path, lit)
                    });
                }
                if let Some(coll) = w.strip_suffix("/any").or_else(|| w.strip_suffix("/all")) {
                    self.expect(Tok::LParen)?;
                    let var = match self.next() {
                        Some(Tok::Word(v)) => v,
                        other => {
                            return Err(FilterError::Syntax(format!(
                                "expected a lambda variable, found {other:?}"
                            )));
                        }
                    };
                    self.expect(Tok::Colon)?;
                    let inner = self.or()?;
                    self.expect(Tok::RParen)?;
                    return Ok(Expr::Any(coll.to_string(), var, Box::new(inner)));
                }
                if self.peek_kw("in") {
                    self.pos += 1;
                    self.expect(Tok::LParen)?;
                    let mut lits = vec![self.literal()?];
                    while self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                        lits.push(self.literal()?);
                    }
                    self.expect(Tok::RParen)?;
                    return Ok(Expr::In(w, lits));
                }
                let op = match self.next() {
                    Some(Tok::Word(o)) => match o.to_ascii_lowercase().as_str() {
                        "eq" => Op::Eq,
                        "ne" => Op::Ne,
                        "gt" => Op::Gt,
                        "ge" => Op::Ge,
                        "lt" => Op::Lt,
                        "le" => Op::Le,
                        _ => return Err(FilterError::Syntax(format!("unknown operator '{o}'"))),
                    },
                    other => {
                        return Err(FilterError::Syntax(format!(
                            "expected an operator, found {other:?}"
                        )));
                    }
                };
                let lit = self.literal()?;
                Ok(Expr::Cmp(w, op, lit))
            }
            other => Err(FilterError::Syntax(format!("unexpected {other:?}"))),
        }
    }
}

pub(crate) fn parse_filter(s: &str) -> Result<Expr, FilterError> {
    let toks = tokenize(s)?;
    let mut p = Parser { toks, pos: 0 };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(FilterError::Syntax("unexpected trailing input".into()));
    }
    Ok(e)
}

/// The rules of one resource: which properties `$filter` may use by default and with advanced queries.
pub(crate) struct FilterRules {
    pub resource: &'static str,
    pub default: &'static [&'static str],
    pub advanced: &'static [&'static str],
}

/// Checks operators and properties; `advanced` is whether `ConsistencyLevel: eventual` and `$count=true` were sent.
pub(crate) fn check_filter(
    e: &Expr,
    rules: &FilterRules,
    advanced: bool,
) -> Result<(), FilterError> {
    let prop_ok = |p: &str| -> Result<(), FilterError> {
        let base = p.split('/').next().unwrap_or(p);
        let known = |list: &[&str]| {
            list.iter()
                .any(|k| k.eq_ignore_ascii_case(p) || k.eq_ignore_ascii_case(base))
        };
        // A property outside the default index is refused with Graph's "unsupported clause" message
        // unless the advanced-query parameters are present.
        if known(rules.default) || (advanced && known(rules.advanced)) {
            Ok(())
        } else {
            Err(FilterError::UnsupportedProperty(base.to_string()))
        }
    };
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_filter(a, rules, advanced)?;
            check_filter(b, rules, advanced)
        }
        Expr::Not(a) => {
            if !advanced {
                return Err(FilterError::NeedsAdvanced("not"));
            }
            check_filter(a, rules, advanced)
        }
        Expr::Cmp(p, op, _) => {
            if *op == Op::Ne && !advanced {
                return Err(FilterError::NeedsAdvanced("ne"));
            }
            if p.contains("/$count") && !advanced {
                return Err(FilterError::NeedsAdvanced("$count"));
            }
            prop_ok(p)
        }
        Expr::In(p, _) | Expr::StartsWith(p, _) => prop_ok(p),
        Expr::EndsWith(p, _) => {
            if !advanced {
                return Err(FilterError::NeedsAdvanced("endsWith"));
            }
            prop_ok(p)
        }
        Expr::Any(coll, _, inner) => {
            prop_ok(coll)?;
            // Properties inside the lambda refer to the collection's items.
            check_lambda_ops(inner, advanced)
        }
    }
}

fn check_lambda_ops(e: &Expr, advanced: bool) -> Result<(), FilterError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_lambda_ops(a, advanced)?;
            check_lambda_ops(b, advanced)
        }
        Expr::Not(_) if !advanced => Err(FilterError::NeedsAdvanced("not")),
        Expr::Cmp(_, Op::Ne, _) if !advanced => Err(FilterError::NeedsAdvanced("ne")),
        Expr::EndsWith(..) if !advanced => Err(FilterError::NeedsAdvanced("endsWith")),
        _ => Ok(()),
    }
}

pub(crate) fn mentions(e: &Expr, prop: &str) -> bool {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => mentions(a, prop) || mentions(b, prop),
        Expr::Not(a) => mentions(a, prop),
        Expr::Cmp(p, ..) | Expr::In(p, _) | Expr::StartsWith(p, _) | Expr::EndsWith(p, _) => p
            .split('/')
            .next()
            .is_some_and(|b| b.eq_ignore_ascii_case(prop)),
        Expr::Any(c, ..) => c.eq_ignore_ascii_case(prop),
    }
}

/// An object `$filter` can be evaluated against.
pub(crate) trait Filterable {
    /// A scalar property (paths like `signInActivity/lastSignInDateTime` allowed).
    fn prop(&self, path: &str) -> Option<PV<'_>>;
    /// The items of a collection property; each item maps a sub-path ("" for primitive items) to a value.
    fn items(&self, path: &str) -> Vec<Vec<(&'static str, PV<'_>)>>;
}

struct Item<'a, 'b> {
    var: &'a str,
    item: &'a [(&'static str, PV<'b>)],
    outer: &'a dyn Filterable,
}

impl Filterable for Item<'_, '_> {
    fn prop(&self, path: &str) -> Option<PV<'_>> {
        let sub = if path == self.var {
            ""
        } else if let Some(rest) = path
            .strip_prefix(self.var)
            .and_then(|r| r.strip_prefix('/'))
        {
            rest
        } else {
            return self.outer.prop(path);
        };
        self.item
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(sub))
            .map(|(_, v)| v.clone())
    }
    fn items(&self, path: &str) -> Vec<Vec<(&'static str, PV<'_>)>> {
        self.outer.items(path)
    }
}

fn cmp_values(v: &PV<'_>, lit: &Lit) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    match (v, lit) {
        (PV::Null, Lit::Null) => Some(Ordering::Equal),
        (PV::Null, _) | (_, Lit::Null) => None,
        (PV::B(b), Lit::Bool(l)) => Some(b.cmp(l)),
        (PV::T(t), Lit::Bare(s)) | (PV::T(t), Lit::Str(s)) => parse_ts(s).map(|l| t.cmp(&l)),
        (PV::S(s), Lit::Str(l)) | (PV::S(s), Lit::Bare(l)) => {
            if let (Some(a), Some(b)) = (looks_like_ts(s), looks_like_ts(l)) {
                return Some(a.cmp(&b));
            }
            Some(s.to_ascii_lowercase().cmp(&l.to_ascii_lowercase()))
        }
        _ => None,
    }
}

fn looks_like_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && b[..4].iter().all(u8::is_ascii_digit) {
        parse_ts(s)
    } else {
        None
    }
}

pub(crate) fn eval(e: &Expr, obj: &dyn Filterable) -> bool {
    use std::cmp::Ordering::*;
    match e {
        Expr::And(a, b) => eval(a, obj) && eval(b, obj),
        Expr::Or(a, b) => eval(a, obj) || eval(b, obj),
        Expr::Not(a) => !eval(a, obj),
        Expr::Cmp(p, op, lit) => {
            let v = obj.prop(p).unwrap_or(PV::Null);
            let c = cmp_values(&v, lit);
            match op {
                Op::Eq => c == Some(Equal),
                Op::Ne => c != Some(Equal),
                Op::Gt => c == Some(Greater),
                Op::Ge => matches!(c, Some(Greater | Equal)),
                Op::Lt => c == Some(Less),
                Op::Le => matches!(c, Some(Less | Equal)),
            }
        }
        Expr::In(p, lits) => {
            let v = obj.prop(p).unwrap_or(PV::Null);
            lits.iter().any(|l| cmp_values(&v, l) == Some(Equal))
        }
        Expr::StartsWith(p, s) => match obj.prop(p) {
            Some(PV::S(v)) => v.to_ascii_lowercase().starts_with(&s.to_ascii_lowercase()),
            _ => false,
        },
        Expr::EndsWith(p, s) => match obj.prop(p) {
            Some(PV::S(v)) => v.to_ascii_lowercase().ends_with(&s.to_ascii_lowercase()),
            _ => false,
        },
        Expr::Any(coll, var, inner) => obj.items(coll).iter().any(|item| {
            let it = Item {
                var,
                item,
                outer: obj,
            };
            eval(inner, &it)
        }),
    }
}

/// Parses `$select` against a property list; unknown names are Graph's 400.
pub(crate) fn parse_select(raw: &str, props: &[&str], type_name: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match props.iter().position(|p| p.eq_ignore_ascii_case(name)) {
            Some(i) => mask |= 1 << i,
            None => {
                return Err(format!(
                    "Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
                ));
            }
        }
    }
    Ok(mask)
}

/// Opaque continuation tokens: `kind` guards against a token from one collection being replayed on another.
pub(crate) fn encode_token(kind: &str, fields: &[u64]) -> String {
    let mut s = format!("LK1|{kind}");
    for f in fields {
        s.push('|');
        s.push_str(&f.to_string());
    }
    B64.encode(s)
}

pub(crate) fn decode_token(kind: &str, token: &str) -> Option<Vec<u64>> {
    let raw = String::from_utf8(B64.decode(token.trim()).ok()?).ok()?;
    let mut parts = raw.split('|');
    if parts.next()? != "LK1" || parts.next()? != kind {
        return None;
    }
    parts.map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Obj;
    impl Filterable for Obj {
        fn prop(&self, path: &str) -> Option<PV<'_>> {
            match path {
                "displayName" => Some(PV::S("Ada Lovelace".into())),
                "accountEnabled" => Some(PV::B(true)),
                "createdDateTime" => Some(PV::T(1_700_000_000)),
                "mail" => Some(PV::Null),
                _ => None,
            }
        }
        fn items(&self, path: &str) -> Vec<Vec<(&'static str, PV<'_>)>> {
            match path {
                "groupTypes" => vec![vec![("", PV::S("Unified".into()))]],
                "assignedLicenses" => vec![vec![(
                    "skuId",
                    PV::S("6fd2c87f-b296-42f0-b197-1e91e994b900".into()),
                )]],
                _ => vec![],
            }
        }
    }

    fn check(f: &str) -> bool {
        eval(&parse_filter(f).unwrap(), &Obj)
    }

    #[test]
    fn evaluates_the_filters_clients_send() {
        assert!(check("displayName eq 'ada lovelace'"));
        assert!(check("startswith(displayName,'Ada')"));
        assert!(!check("endswith(displayName,'x')"));
        assert!(check("accountEnabled eq true and not(displayName eq 'x')"));
        assert!(check("groupTypes/any(c:c eq 'Unified')"));
        assert!(check(
            "assignedLicenses/any(a:a/skuId eq 6fd2c87f-b296-42f0-b197-1e91e994b900)"
        ));
        assert!(check("createdDateTime ge 2023-01-01T00:00:00Z"));
        assert!(!check("createdDateTime le 2023-01-01T00:00:00Z"));
        assert!(check("displayName in ('x', 'Ada Lovelace')"));
        assert!(check("mail eq null"));
        assert!(check("(accountEnabled eq false) or (displayName ne 'x')"));
        assert!(parse_filter("displayName eq").is_err());
        assert!(parse_filter("displayName foo 'x'").is_err());
    }

    #[test]
    fn advanced_operators_are_flagged() {
        let rules = FilterRules {
            resource: "User",
            default: &["displayName", "accountEnabled"],
            advanced: &["createdDateTime"],
        };
        let e = parse_filter("displayName ne 'x'").unwrap();
        assert_eq!(
            check_filter(&e, &rules, false),
            Err(FilterError::NeedsAdvanced("ne"))
        );
        assert!(check_filter(&e, &rules, true).is_ok());
        let e = parse_filter("endswith(displayName,'x')").unwrap();
        assert_eq!(
            check_filter(&e, &rules, false),
            Err(FilterError::NeedsAdvanced("endsWith"))
        );
        let e = parse_filter("city eq 'x'").unwrap();
        assert_eq!(
            check_filter(&e, &rules, true),
            Err(FilterError::UnsupportedProperty("city".into()))
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = encode_token("users", &[5, 9]);
        assert_eq!(decode_token("users", &t), Some(vec![5, 9]));
        assert_eq!(decode_token("groups", &t), None);
        assert_eq!(decode_token("users", "garbage!"), None);
    }
}
