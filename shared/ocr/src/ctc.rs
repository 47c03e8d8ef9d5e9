//! CTC decoding under the client's constraints.
//!
//! The constraints act on the model's log-probabilities, not on the decoded
//! string: classes the answer may not contain are masked to `-inf` at every
//! time step, and what a mask cannot express (length bounds, "all digits or all
//! letters", "both kinds", "two words", the arithmetic grammar) is enforced by a
//! CTC prefix beam search that only extends prefixes which can still become a
//! valid answer and returns the most probable *valid* sequence. With no such
//! constraint the best path (per-step argmax, repeats collapsed, blanks
//! dropped) is exact enough and much cheaper.

use std::collections::HashMap;

use crate::error::OcrError;

/// Width of the prefix beam search.
const BEAM_WIDTH: usize = 24;
/// Per time step, extend prefixes with at most this many characters...
const MAX_CANDIDATES: usize = 12;
/// ...and only with characters at most this much less likely (in log space)
/// than the step's most likely allowed character.
const CANDIDATE_LOG_GAP: f32 = 16.0;
/// An extension whose score falls this far (in log space) below the best
/// prefix's at the same step is not worth keeping, whatever the constraints.
const BEAM_LOG_GAP: f32 = 20.0;

/// The symbols of a `calc` expression besides digits.
const CALC_SYMBOLS: &str = "+-*=?";

/// What the client said about the answer (the classic protocol's image options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Constraints {
    /// 0 any; 1 digits only; 2 letters only; 3 digits or letters (one kind
    /// only); 4 both digits and letters required.
    pub numeric: u8,
    /// Minimum answer length in characters (spaces count); 0 = no bound.
    pub min_len: u8,
    /// Maximum answer length in characters; 0 = no bound.
    pub max_len: u8,
    /// `regsense=1`: the answer keeps the case read; otherwise it is
    /// lower-cased and the two cases of a letter share their probability.
    pub case_sensitive: bool,
    /// The image shows `a op b` (`op` one of `+ - *`, optionally followed by
    /// `=` or `=?`); the answer is its integer result. Overrides `numeric`
    /// and the length bounds, which then describe the result, not the image.
    pub calc: bool,
    /// The answer is two or more words separated by single spaces.
    pub phrase: bool,
}

/// One recognised answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// What to send the client: the `calc` result, lower-cased unless
    /// `case_sensitive`.
    pub text: String,
    /// The probability the model gives the exact sequence in [`Answer::raw`]
    /// (summed over all its CTC alignments), in `[0, 1]`.
    pub confidence: f32,
    /// The characters read, before `calc` evaluation and case folding.
    pub raw: String,
}

/// The characters the model's classes stand for: class `i` is `chars[i - 1]`,
/// class 0 is the CTC blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charset {
    chars: Vec<char>,
}

impl Charset {
    /// Checks the charset fits the decoder: at most 255 distinct characters.
    pub fn new(charset: &str) -> Result<Self, OcrError> {
        let chars: Vec<char> = charset.chars().collect();
        if chars.is_empty() || chars.len() > usize::from(u8::MAX) {
            return Err(OcrError::Model(format!("the charset has {} characters; 1 to 255 expected", chars.len())));
        }
        for (i, c) in chars.iter().enumerate() {
            if chars[..i].contains(c) {
                return Err(OcrError::Model(format!("the charset repeats {c:?}")));
            }
        }
        Ok(Charset { chars })
    }

    /// Number of model classes: the characters plus the blank.
    pub fn classes(&self) -> usize {
        self.chars.len() + 1
    }

    /// The character of a non-blank class.
    fn char_of(&self, class: u8) -> char {
        self.chars[usize::from(class) - 1]
    }

    pub(crate) fn class_of(&self, c: char) -> Option<usize> {
        self.chars.iter().position(|&x| x == c).map(|i| i + 1)
    }
}

/// A `[steps, classes]` matrix of per-step log-probabilities, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LogProbs {
    steps: usize,
    classes: usize,
    data: Vec<f32>,
}

impl LogProbs {
    /// Wraps a model output; `data.len()` must be `steps * classes`.
    pub fn new(steps: usize, classes: usize, data: Vec<f32>) -> Result<Self, OcrError> {
        if classes == 0 || data.len() != steps * classes {
            return Err(OcrError::Model(format!(
                "output of {} values is not {steps} steps x {classes} classes",
                data.len()
            )));
        }
        Ok(LogProbs { steps, classes, data })
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn row(&self, t: usize) -> &[f32] {
        &self.data[t * self.classes..(t + 1) * self.classes]
    }

    fn row_mut(&mut self, t: usize) -> &mut [f32] {
        &mut self.data[t * self.classes..(t + 1) * self.classes]
    }

    /// The probability of the likeliest class at the least sure step (1 for
    /// no steps): how sure the reading is before any decode.
    pub fn least_sure(&self) -> f32 {
        (0..self.steps).map(|t| row_max(self.row(t)).exp()).fold(1.0, f32::min)
    }

    /// Several readings of the same input, combined step by step: the mean
    /// of their log-probabilities, renormalised (the normalised geometric
    /// mean of the distributions). Errors unless all have one shape.
    pub fn log_mean(readings: &[LogProbs]) -> Result<LogProbs, OcrError> {
        let first = readings.first().ok_or_else(|| OcrError::Model("log_mean of no readings".into()))?;
        if readings.iter().any(|r| r.steps != first.steps || r.classes != first.classes) {
            return Err(OcrError::Model("log_mean of readings of different shapes".into()));
        }
        let mut data = vec![0.0f32; first.data.len()];
        for r in readings {
            for (sum, v) in data.iter_mut().zip(&r.data) {
                *sum += v;
            }
        }
        let n = readings.len() as f32;
        for row in data.chunks_exact_mut(first.classes) {
            row.iter_mut().for_each(|v| *v /= n);
            log_softmax(row);
        }
        LogProbs::new(first.steps, first.classes, data)
    }
}

fn row_max(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// A prior over the alphabet a whole text is drawn from (`model.json`'s
/// `alphabet_prior`): many texts use one case, or digits only, so the
/// string's other characters say which of two look-alikes (`c`/`C`, `O`/`0`)
/// an undecided one is.
///
/// Each alphabet `A` with share `s` scores a reading of `n` characters as
/// `ln s + sum_i (ln p_i(best character of A) + ln(N / |A|))`, with `p_i` the
/// probabilities at the `i`-th character's surest frame and `N` the size of
/// the union of the alphabets (a uniform prior over `N` characters in
/// training, over `A` in the text); the best-scoring alphabet's characters
/// are the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AlphabetPrior {
    modes: Vec<PriorMode>,
}

/// One alphabet of an [`AlphabetPrior`], compiled.
#[derive(Debug, Clone, PartialEq)]
struct PriorMode {
    classes: Vec<u8>,
    /// `ln s`.
    log_share: f32,
    /// `ln(N / |A|)`, added per character.
    log_bonus: f32,
}

impl AlphabetPrior {
    /// Compiles `(alphabet, share)` pairs against a charset. Errors unless
    /// there is at least one pair, every share is finite and positive, the
    /// shares sum to at most 1 (within rounding), and every alphabet is
    /// non-empty, without repeats, of characters the charset has.
    pub fn new<'a>(
        charset: &Charset,
        modes: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Result<AlphabetPrior, OcrError> {
        let bad = |why: String| OcrError::Model(format!("alphabet_prior: {why}"));
        let mut union: Vec<u8> = Vec::new();
        let mut compiled = Vec::new();
        let mut total = 0.0;
        for (alphabet, share) in modes {
            if !(share.is_finite() && share > 0.0) {
                return Err(bad(format!("share {share} of {alphabet:?} is not a positive number")));
            }
            total += share;
            let mut classes: Vec<u8> = Vec::new();
            for c in alphabet.chars() {
                let class = charset.class_of(c).ok_or_else(|| bad(format!("{c:?} is not in the charset")))?;
                // Classes are < 256: `Charset::new` caps the charset at 255.
                let class = class as u8;
                if classes.contains(&class) {
                    return Err(bad(format!("{alphabet:?} repeats {c:?}")));
                }
                classes.push(class);
                if !union.contains(&class) {
                    union.push(class);
                }
            }
            if classes.is_empty() {
                return Err(bad("an alphabet is empty".into()));
            }
            compiled.push((classes, share));
        }
        if compiled.is_empty() {
            return Err(bad("no alphabet".into()));
        }
        if total > 1.0 + 1e-6 {
            return Err(bad(format!("the shares sum to {total}, more than 1")));
        }
        let n = union.len() as f64;
        let modes = compiled
            .into_iter()
            .map(|(classes, share)| PriorMode {
                log_share: share.ln() as f32,
                log_bonus: (n / classes.len() as f64).ln() as f32,
                classes,
            })
            .collect();
        Ok(AlphabetPrior { modes })
    }

    /// The best-scoring alphabet's reading of the characters at `frames`
    /// (one frame per character) of `lp`, a normalised matrix; only classes
    /// `allowed` compete, and probabilities are renormalised over the allowed
    /// non-blank classes. `None` when no alphabet has an allowed class.
    fn read(&self, lp: &LogProbs, frames: &[usize], allowed: &[bool]) -> Option<Vec<u8>> {
        let norms: Vec<f32> = frames
            .iter()
            .map(|&t| {
                let row = lp.row(t);
                row.iter()
                    .zip(allowed)
                    .skip(1)
                    .filter(|(_, &ok)| ok)
                    .fold(f32::NEG_INFINITY, |a, (&v, _)| log_add(a, v))
            })
            .collect();
        let mut best: Option<(f32, Vec<u8>)> = None;
        'modes: for mode in &self.modes {
            let mut score = mode.log_share;
            let mut label = Vec::with_capacity(frames.len());
            for (&t, &norm) in frames.iter().zip(&norms) {
                let row = lp.row(t);
                let Some(class) = mode
                    .classes
                    .iter()
                    .copied()
                    .filter(|&k| allowed[usize::from(k)])
                    .max_by(|&a, &b| row[usize::from(a)].total_cmp(&row[usize::from(b)]))
                else {
                    // The constraints mask this whole alphabet: it cannot be the text's.
                    continue 'modes;
                };
                score += row[usize::from(class)] - norm + mode.log_bonus;
                label.push(class);
            }
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, label));
            }
        }
        best.map(|(_, label)| label)
    }
}

/// Decodes the most probable answer that satisfies `constraints`.
///
/// Errors with [`OcrError::NoValidAnswer`] when no sequence the search found
/// is valid (an empty reading is never valid), and with [`OcrError::Model`]
/// when the matrix and the charset disagree on the class count.
pub fn decode(log_probs: &LogProbs, charset: &Charset, constraints: &Constraints) -> Result<Answer, OcrError> {
    decode_with_prior(log_probs, charset, constraints, None)
}

/// [`decode`], with an [`AlphabetPrior`] choosing the characters of the best
/// path when the constraints leave it the answer (`numeric=0`, no `calc` or
/// `phrase`, and no length bound it misses: a bound the best path meets
/// changes nothing). With `regsense=0` the prior reads the
/// probabilities before the cases are merged, and the answer is lower-cased
/// as ever.
pub fn decode_with_prior(
    log_probs: &LogProbs,
    charset: &Charset,
    constraints: &Constraints,
    prior: Option<&AlphabetPrior>,
) -> Result<Answer, OcrError> {
    if log_probs.classes() != charset.classes() {
        return Err(OcrError::Model(format!(
            "the model has {} classes, the charset {}",
            log_probs.classes(),
            charset.classes()
        )));
    }
    let rules = Rules::new(charset, constraints);
    let (normalized, scored) = scored_matrices(log_probs, &rules);
    let mut masked = scored.clone();
    for t in 0..masked.steps() {
        for (v, &ok) in masked.row_mut(t).iter_mut().zip(&rules.allowed) {
            if !ok {
                *v = f32::NEG_INFINITY;
            }
        }
    }

    let mut label = None;
    let path = best_path_frames(&masked);
    // A length bound the best path already meets changes nothing: the answer
    // is the one without it (prior included), so a client that sends the
    // length it expects gets the same reading as one that does not.
    if rules.best_path_suffices(path.len()) {
        let prior = prior.filter(|_| rules.numeric == 0);
        let read = prior.and_then(|prior| {
            let frames: Vec<usize> = path.iter().map(|&(_, t)| t).collect();
            let mut label = prior.read(&normalized, &frames, &rules.allowed)?;
            for class in &mut label {
                if let Some(&(lower, _)) = rules.case_pairs.iter().find(|&&(_, upper)| upper == usize::from(*class)) {
                    *class = lower as u8;
                }
            }
            Some(label)
        });
        label = Some(read.unwrap_or_else(|| path.iter().map(|&(class, _)| class).collect()));
    }
    let label = match label {
        Some(label) => label,
        // The pruned search is exact enough whenever the best valid answer is
        // not far less likely than the best reading; when a constraint asks
        // for such an answer (a length the image hardly shows), search again
        // without pruning rather than give up on a valid answer.
        None => prefix_beam_search(&masked, &rules, Search::Pruned)
            .or_else(|| prefix_beam_search(&masked, &rules, Search::Exhaustive))
            .ok_or(OcrError::NoValidAnswer)?,
    };

    let raw: String = label.iter().map(|&k| charset.char_of(k)).collect();
    let confidence = ctc_log_likelihood(&scored, &label).exp().clamp(0.0, 1.0);
    let mut text =
        if constraints.calc { evaluate_calc(&raw).ok_or(OcrError::NoValidAnswer)?.to_string() } else { raw.clone() };
    if !constraints.case_sensitive {
        text = text.to_lowercase();
    }
    Ok(Answer { text, confidence, raw })
}

/// The distribution answers are scored on: `log_probs` normalised, and a
/// copy with the two cases of a letter merged when case does not matter.
fn scored_matrices(log_probs: &LogProbs, rules: &Rules) -> (LogProbs, LogProbs) {
    let mut normalized = log_probs.clone();
    for t in 0..normalized.steps() {
        log_softmax(normalized.row_mut(t));
    }
    let mut scored = normalized.clone();
    for t in 0..scored.steps() {
        let row = scored.row_mut(t);
        for &(lower, upper) in &rules.case_pairs {
            row[lower] = log_add(row[lower], row[upper]);
            row[upper] = f32::NEG_INFINITY;
        }
    }
    (normalized, scored)
}

/// `log P(raw | log_probs)` over all CTC alignments, on the distribution
/// [`decode_with_prior`] scores its answer on (the two cases of a letter
/// merged unless `constraints.case_sensitive`): how likely one reading finds
/// an answer another reading gave ([`Answer::raw`]). Errors if `raw` has a
/// character the charset lacks, or the matrix and charset disagree.
pub fn answer_log_likelihood(
    log_probs: &LogProbs,
    charset: &Charset,
    constraints: &Constraints,
    raw: &str,
) -> Result<f32, OcrError> {
    if log_probs.classes() != charset.classes() {
        return Err(OcrError::Model(format!(
            "the model has {} classes, the charset {}",
            log_probs.classes(),
            charset.classes()
        )));
    }
    let rules = Rules::new(charset, constraints);
    let label = raw
        .chars()
        .map(|c| {
            let class = charset.class_of(c).ok_or(OcrError::NoValidAnswer)?;
            let class = rules.case_pairs.iter().find(|&&(_, upper)| upper == class).map_or(class, |&(lower, _)| lower);
            Ok(class as u8)
        })
        .collect::<Result<Vec<u8>, OcrError>>()?;
    let (_, scored) = scored_matrices(log_probs, &rules);
    Ok(ctc_log_likelihood(&scored, &label))
}

/// Which character kinds a class is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Digit,
    Letter,
    Space,
    Symbol,
}

/// The constraints compiled against one charset.
struct Rules {
    kinds: Vec<Kind>,
    chars: Vec<char>,
    /// Per class: may the answer contain it at all.
    allowed: Vec<bool>,
    /// (lower, upper) class pairs merged when case does not matter.
    case_pairs: Vec<(usize, usize)>,
    numeric: u8,
    min_len: usize,
    max_len: Option<usize>,
    calc: bool,
    phrase: bool,
}

impl Rules {
    fn new(charset: &Charset, c: &Constraints) -> Self {
        let mut kinds = vec![Kind::Blank];
        let mut chars = vec!['\0'];
        for &ch in &charset.chars {
            kinds.push(if ch.is_ascii_digit() {
                Kind::Digit
            } else if ch.is_alphabetic() {
                Kind::Letter
            } else if ch == ' ' {
                Kind::Space
            } else {
                Kind::Symbol
            });
            chars.push(ch);
        }
        let allowed = kinds
            .iter()
            .zip(&chars)
            .map(|(&kind, &ch)| match kind {
                Kind::Blank => true,
                _ if c.calc => kind == Kind::Digit || CALC_SYMBOLS.contains(ch),
                Kind::Space => c.phrase,
                Kind::Symbol => false,
                Kind::Digit => c.numeric != 2,
                Kind::Letter => c.numeric != 1,
            })
            .collect();
        let case_pairs = if c.case_sensitive {
            Vec::new()
        } else {
            charset
                .chars
                .iter()
                .filter(|ch| ch.is_uppercase())
                .filter_map(|&upper| {
                    let mut lower = upper.to_lowercase();
                    let lower = match (lower.next(), lower.next()) {
                        (Some(l), None) => l,
                        _ => return None,
                    };
                    Some((charset.class_of(lower)?, charset.class_of(upper)?))
                })
                .collect()
        };
        let (numeric, min_len, max_len) = if c.calc {
            (0, 3, None)
        } else {
            let max = (c.max_len > 0).then_some(usize::from(c.max_len));
            (c.numeric, usize::from(c.min_len).max(1), max)
        };
        Rules { kinds, chars, allowed, case_pairs, numeric, min_len, max_len, calc: c.calc, phrase: c.phrase }
    }

    /// Whether the (masked) best path of `len` characters is a valid answer
    /// as it stands: no rule masking cannot enforce (`calc`, `phrase`,
    /// `numeric` 3 or 4), and a length within the bounds (at least one
    /// character, so an empty path never is).
    fn best_path_suffices(&self, len: usize) -> bool {
        !self.calc
            && !self.phrase
            && self.numeric < 3
            && len >= self.min_len
            && self.max_len.is_none_or(|max| len <= max)
    }

    /// The state of the empty prefix.
    fn start(&self) -> Prefix {
        Prefix {
            len: 0,
            first_kind: None,
            has_digit: false,
            has_letter: false,
            has_space: false,
            last_space: false,
            calc: CalcState::Left(0),
        }
    }

    /// `prefix` extended with `class`, or `None` when that can no longer
    /// become a valid answer.
    fn extend(&self, prefix: &Prefix, class: u8) -> Option<Prefix> {
        let kind = self.kinds[usize::from(class)];
        let mut next = *prefix;
        next.len = prefix.len.checked_add(1)?;
        if self.max_len.is_some_and(|max| usize::from(next.len) > max) {
            return None;
        }
        if self.calc {
            next.calc = prefix.calc.step(self.chars[usize::from(class)])?;
            return Some(next);
        }
        match kind {
            Kind::Digit | Kind::Letter => {
                if self.numeric == 3 && prefix.first_kind.is_some_and(|k| k != kind) {
                    return None;
                }
                next.first_kind = prefix.first_kind.or(Some(kind));
                next.has_digit |= kind == Kind::Digit;
                next.has_letter |= kind == Kind::Letter;
                next.last_space = false;
            }
            Kind::Space => {
                // Words are non-empty: no leading or double space.
                if self.phrase && (prefix.len == 0 || prefix.last_space) {
                    return None;
                }
                next.has_space = true;
                next.last_space = true;
            }
            Kind::Symbol => next.last_space = false,
            Kind::Blank => return None,
        }
        Some(next)
    }

    /// Is the prefix a valid answer as it stands?
    fn complete(&self, prefix: &Prefix) -> bool {
        if self.calc {
            return prefix.calc.is_complete();
        }
        if usize::from(prefix.len) < self.min_len {
            return false;
        }
        if self.numeric == 4 && !(prefix.has_digit && prefix.has_letter) {
            return false;
        }
        if self.phrase && (!prefix.has_space || prefix.last_space) {
            return false;
        }
        true
    }
}

/// What the constraints need to know about a prefix, kept up to date as it
/// grows one character at a time.
#[derive(Debug, Clone, Copy)]
struct Prefix {
    len: u16,
    /// Digit or letter, whichever came first (for `numeric=3`).
    first_kind: Option<Kind>,
    has_digit: bool,
    has_letter: bool,
    has_space: bool,
    last_space: bool,
    calc: CalcState,
}

/// Where a prefix of `\d{1,3}[+\-*]\d{1,3}(=\??)?` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CalcState {
    /// In the first operand, with this many digits.
    Left(u8),
    /// In the second operand, with this many digits.
    Right(u8),
    Equals,
    Question,
}

impl CalcState {
    fn is_complete(self) -> bool {
        !matches!(self, CalcState::Left(_) | CalcState::Right(0))
    }
}

impl CalcState {
    /// The grammar after one more character; `None` once it cannot match.
    fn step(self, c: char) -> Option<CalcState> {
        Some(match (self, c) {
            (CalcState::Left(n), '0'..='9') if n < 3 => CalcState::Left(n + 1),
            (CalcState::Left(n), '+' | '-' | '*') if n > 0 => CalcState::Right(0),
            (CalcState::Right(n), '0'..='9') if n < 3 => CalcState::Right(n + 1),
            (CalcState::Right(n), '=') if n > 0 => CalcState::Equals,
            (CalcState::Equals, '?') => CalcState::Question,
            _ => return None,
        })
    }
}

#[cfg(test)]
fn calc_state(mut chars: impl Iterator<Item = char>) -> Option<CalcState> {
    chars.try_fold(CalcState::Left(0), CalcState::step)
}

/// The integer result of a complete calc expression such as `12+7=?`.
fn evaluate_calc(expr: &str) -> Option<i64> {
    let body = expr.trim_end_matches(['=', '?']);
    let at = body.find(['+', '-', '*'])?;
    let left: i64 = body[..at].parse().ok()?;
    let right: i64 = body[at + 1..].parse().ok()?;
    match &body[at..at + 1] {
        "+" => left.checked_add(right),
        "-" => left.checked_sub(right),
        "*" => left.checked_mul(right),
        _ => None,
    }
}

/// The best path (per-step argmax, repeats collapsed, blanks dropped): its
/// characters, each with the frame of its run (the steps it is the argmax
/// of) least likely to be the blank.
fn best_path_frames(lp: &LogProbs) -> Vec<(u8, usize)> {
    let mut label: Vec<(u8, usize)> = Vec::new();
    let mut previous = 0usize;
    for t in 0..lp.steps() {
        let best = argmax(lp.row(t));
        if best != 0 && best != previous {
            // Classes are < 256: `Charset::new` caps the charset at 255.
            label.push((best as u8, t));
        } else if best != 0 {
            if let Some(last) = label.last_mut() {
                if lp.row(t)[0] < lp.row(last.1)[0] {
                    last.1 = t;
                }
            }
        }
        previous = best;
    }
    label
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// One prefix of the beam: log-probability of its alignments ending in a
/// blank and ending in its last character.
#[derive(Debug, Clone, Copy)]
struct Score {
    blank: f32,
    last: f32,
}

impl Score {
    const NONE: Score = Score { blank: f32::NEG_INFINITY, last: f32::NEG_INFINITY };

    fn total(self) -> f32 {
        log_add(self.blank, self.last)
    }
}

/// How hard [`prefix_beam_search`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    /// Per step at most [`MAX_CANDIDATES`] characters within
    /// [`CANDIDATE_LOG_GAP`], and no prefix [`BEAM_LOG_GAP`] below the best.
    Pruned,
    /// Every allowed character at every step, and a beam that keeps
    /// [`BEAM_WIDTH`] complete and as many incomplete prefixes.
    Exhaustive,
}

/// A node of the prefix trie the beam search grows: its last class, its
/// parent and what the constraints know about it.
struct Node {
    parent: u32,
    class: u8,
    prefix: Prefix,
}

/// CTC prefix beam search over `lp` (already masked) that keeps only prefixes
/// `rules` finds viable and returns the most probable complete one.
///
/// Prefixes live in a trie (`nodes`, node 0 the empty prefix), so a beam
/// entry is a node id and extending one is a lookup, not a copy.
fn prefix_beam_search(lp: &LogProbs, rules: &Rules, search: Search) -> Option<Vec<u8>> {
    let pruned = search == Search::Pruned;
    let steps = lp.steps();
    let mut nodes = vec![Node { parent: 0, class: 0, prefix: rules.start() }];
    // (parent, class) -> child, or u32::MAX when that extension is not viable.
    let mut children: HashMap<(u32, u8), u32> = HashMap::new();
    let mut beam: Vec<(u32, Score)> = vec![(0, Score { blank: 0.0, last: f32::NEG_INFINITY })];
    // Scores of the prefixes reached at this step, by node id, and which
    // ids were touched (a dense table beats hashing on this hot path).
    let mut next: Vec<Score> = vec![Score::NONE];
    let mut touched: Vec<u32> = Vec::new();
    let mut candidates: Vec<usize> = Vec::with_capacity(lp.classes());
    for t in 0..steps {
        let row = lp.row(t);
        candidates.clear();
        candidates.extend((1..lp.classes()).filter(|&k| row[k].is_finite()));
        candidates.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let mut threshold = f32::NEG_INFINITY;
        if pruned {
            if let Some(&top) = candidates.first() {
                let floor = row[top] - CANDIDATE_LOG_GAP;
                candidates.retain(|&k| row[k] >= floor);
            }
            candidates.truncate(MAX_CANDIDATES);
            let row_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let best_total = beam.first().map_or(f32::NEG_INFINITY, |b| b.1.total());
            threshold = best_total + row_max - BEAM_LOG_GAP;
        }

        let mut add = |next: &mut Vec<Score>, id: u32, blank: f32, last: f32| {
            if next.len() <= id as usize {
                next.resize(id as usize + 1, Score::NONE);
            }
            let entry = &mut next[id as usize];
            if entry.blank == f32::NEG_INFINITY && entry.last == f32::NEG_INFINITY {
                touched.push(id);
            }
            entry.blank = log_add(entry.blank, blank);
            entry.last = log_add(entry.last, last);
        };
        for &(id, score) in &beam {
            let total = score.total();
            let last = (id != 0).then(|| nodes[id as usize].class);
            let stay_last = last.map_or(f32::NEG_INFINITY, |c| score.last + row[usize::from(c)]);
            add(&mut next, id, total + row[0], stay_last);
            for &k in &candidates {
                // Classes are < 256: `Charset::new` caps the charset at 255.
                let class = k as u8;
                // A repeated character needs a blank between the two.
                let from = if last == Some(class) { score.blank } else { total };
                let extended_score = from + row[k];
                if extended_score < threshold {
                    if last == Some(class) {
                        continue;
                    }
                    // Candidates are sorted: the rest score lower still.
                    break;
                }
                let child = *children.entry((id, class)).or_insert_with(|| {
                    let extended = rules.extend(&nodes[id as usize].prefix, class);
                    match extended {
                        Some(prefix) => {
                            nodes.push(Node { parent: id, class, prefix });
                            (nodes.len() - 1) as u32
                        }
                        None => u32::MAX,
                    }
                });
                if child != u32::MAX {
                    add(&mut next, child, f32::NEG_INFINITY, extended_score);
                }
            }
        }

        // Drop prefixes too short to reach the minimum length in the steps left.
        let remaining = steps - t - 1;
        beam.clear();
        for id in touched.drain(..) {
            let score = std::mem::replace(&mut next[id as usize], Score::NONE);
            let long_enough = usize::from(nodes[id as usize].prefix.len) + remaining >= rules.min_len;
            if score.total() > f32::NEG_INFINITY && long_enough {
                beam.push((id, score));
            }
        }
        beam.sort_by(|a, b| b.1.total().total_cmp(&a.1.total()));
        if pruned {
            beam.truncate(BEAM_WIDTH);
        } else {
            // The best complete prefixes and, apart, the best ones not yet
            // complete: likelier prefixes that can never become valid (all
            // letters under numeric=4, too short) must not crowd out the
            // unlikely ones that will.
            let (mut complete, mut open) = (0, 0);
            beam.retain(|(id, _)| {
                let n = if rules.complete(&nodes[*id as usize].prefix) { &mut complete } else { &mut open };
                *n += 1;
                *n <= BEAM_WIDTH
            });
        }
    }
    let (best, _) = beam
        .into_iter()
        .filter(|(id, _)| rules.complete(&nodes[*id as usize].prefix))
        .max_by(|a, b| a.1.total().total_cmp(&b.1.total()))?;
    let mut label = Vec::new();
    let mut id = best;
    while id != 0 {
        let node = &nodes[id as usize];
        label.push(node.class);
        id = node.parent;
    }
    label.reverse();
    Some(label)
}

/// `log P(label | x)` summed over all CTC alignments (the forward algorithm).
fn ctc_log_likelihood(lp: &LogProbs, label: &[u8]) -> f32 {
    if lp.steps() == 0 {
        return if label.is_empty() { 0.0 } else { f32::NEG_INFINITY };
    }
    // Extended label: blank, l1, blank, l2, ..., blank.
    let ext: Vec<usize> = std::iter::once(0).chain(label.iter().flat_map(|&k| [usize::from(k), 0])).collect();
    let mut alpha = vec![f32::NEG_INFINITY; ext.len()];
    let first = lp.row(0);
    alpha[0] = first[0];
    if ext.len() > 1 {
        alpha[1] = first[ext[1]];
    }
    let mut previous = alpha.clone();
    for t in 1..lp.steps() {
        std::mem::swap(&mut alpha, &mut previous);
        let row = lp.row(t);
        for s in 0..ext.len() {
            let mut a = previous[s];
            if s >= 1 {
                a = log_add(a, previous[s - 1]);
            }
            if s >= 2 && ext[s] != 0 && ext[s] != ext[s - 2] {
                a = log_add(a, previous[s - 2]);
            }
            alpha[s] = a + row[ext[s]];
        }
    }
    let n = ext.len();
    if n == 1 {
        alpha[0]
    } else {
        log_add(alpha[n - 1], alpha[n - 2])
    }
}

/// `log(exp(a) + exp(b))`, exact at `-inf`.
fn log_add(a: f32, b: f32) -> f32 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f32::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// Normalises a row of scores into log-probabilities (a no-op, up to rounding,
/// on a row that already is one); NaN counts as impossible.
fn log_softmax(row: &mut [f32]) {
    for v in row.iter_mut() {
        if v.is_nan() {
            *v = f32::NEG_INFINITY;
        }
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    let log_sum = max + sum.ln();
    for v in row.iter_mut() {
        *v -= log_sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHARSET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+-*=? ";

    #[test]
    fn readings_combine_as_a_normalised_geometric_mean() {
        let ln = |v: &[f32]| v.iter().map(|p| p.ln()).collect::<Vec<f32>>();
        // Two steps of three classes; the second reading is unsure at step 0.
        let a = LogProbs::new(2, 3, [ln(&[0.8, 0.1, 0.1]), ln(&[0.2, 0.2, 0.6])].concat()).expect("a");
        let b = LogProbs::new(2, 3, [ln(&[0.2, 0.4, 0.4]), ln(&[0.2, 0.2, 0.6])].concat()).expect("b");
        assert!((a.least_sure() - 0.6).abs() < 1e-6);
        assert!((b.least_sure() - 0.4).abs() < 1e-6);
        let m = LogProbs::log_mean(&[a.clone(), b]).expect("same shape");
        // Step 0: sqrt(0.8*0.2) = 0.4, sqrt(0.1*0.4) = 0.2 twice, renormalised over 0.8.
        let p0: Vec<f32> = m.row(0).iter().map(|v| v.exp()).collect();
        for (got, want) in p0.iter().zip([0.5, 0.25, 0.25]) {
            assert!((got - want).abs() < 1e-5, "{p0:?}");
        }
        // Step 1 agreed: unchanged.
        for (got, want) in m.row(1).iter().zip(a.row(1)) {
            assert!((got - want).abs() < 1e-5);
        }
        let alone = LogProbs::log_mean(std::slice::from_ref(&a)).expect("one");
        assert!((0..2).all(|t| alone.row(t).iter().zip(a.row(t)).all(|(x, y)| (x - y).abs() < 1e-6)));
        let other = LogProbs::new(1, 3, ln(&[0.2, 0.4, 0.4])).expect("other");
        assert!(LogProbs::log_mean(&[a, other]).is_err());
        assert!(LogProbs::log_mean(&[]).is_err());
    }

    fn charset() -> Charset {
        Charset::new(CHARSET).expect("charset")
    }

    /// A matrix whose steps each put most of the mass on the first choice and
    /// the rest, in order, on the others; `'_'` stands for the blank.
    fn matrix(steps: &[&[(char, f32)]]) -> LogProbs {
        let cs = charset();
        let classes = cs.classes();
        let mut data = Vec::with_capacity(steps.len() * classes);
        for step in steps {
            let mut row = vec![1e-6f32; classes];
            for &(c, p) in step.iter() {
                let k = if c == '_' { 0 } else { cs.class_of(c).expect("char in charset") };
                row[k] = p;
            }
            let sum: f32 = row.iter().sum();
            data.extend(row.iter().map(|p| (p / sum).ln()));
        }
        LogProbs::new(steps.len(), classes, data).expect("matrix")
    }

    /// Each character read with probability `p` on one step, blanks between.
    fn clear(text: &str) -> Vec<Vec<(char, f32)>> {
        let mut steps = vec![vec![('_', 1.0)]];
        for c in text.chars() {
            steps.push(vec![(c, 1.0)]);
            steps.push(vec![('_', 1.0)]);
        }
        steps
    }

    fn run(steps: &[Vec<(char, f32)>], c: Constraints) -> Result<Answer, OcrError> {
        let steps: Vec<&[(char, f32)]> = steps.iter().map(Vec::as_slice).collect();
        decode(&matrix(&steps), &charset(), &c)
    }

    fn cs() -> Constraints {
        Constraints { case_sensitive: true, ..Constraints::default() }
    }

    #[test]
    fn best_path_collapses_repeats_and_drops_blanks() {
        // GIVEN a path a a _ a b b _
        let steps = vec![
            vec![('a', 0.9)],
            vec![('a', 0.9)],
            vec![('_', 0.9)],
            vec![('a', 0.9)],
            vec![('b', 0.9)],
            vec![('b', 0.9)],
            vec![('_', 0.9)],
        ];
        // WHEN decoded with no constraints THEN repeats merge unless a blank separates them
        let answer = run(&steps, cs()).expect("answer");
        assert_eq!(answer.text, "aab");
        assert_eq!(answer.raw, "aab");
        assert!(answer.confidence > 0.3 && answer.confidence <= 1.0);
    }

    #[test]
    fn confidence_is_the_sequence_probability() {
        let steps = clear("x7");
        let answer = run(&steps, cs()).expect("answer");
        assert!(answer.confidence > 0.99, "{}", answer.confidence);
        // Two equally likely readings of the one character: about one half each.
        let steps = vec![vec![('k', 0.5), ('x', 0.5)]];
        let answer = run(&steps, cs()).expect("answer");
        assert!((answer.confidence - 0.5).abs() < 0.01, "{}", answer.confidence);
    }

    #[test]
    fn an_empty_reading_is_no_answer_unless_a_character_is_possible() {
        let steps = vec![vec![('_', 0.99), ('q', 0.01)], vec![('_', 0.99)]];
        let answer = run(&steps, cs()).expect("answer");
        assert_eq!(answer.text, "q");
        // A step where only the blank is possible at all.
        let lp = LogProbs::new(1, charset().classes(), {
            let mut row = vec![f32::NEG_INFINITY; charset().classes()];
            row[0] = 0.0;
            row
        })
        .expect("matrix");
        assert!(matches!(decode(&lp, &charset(), &cs()), Err(OcrError::NoValidAnswer)));
    }

    #[test]
    fn numeric_1_reads_only_digits() {
        // GIVEN an O that could be a 0, an l that could be a 1
        let steps = vec![vec![('O', 0.6), ('0', 0.4)], vec![('_', 0.9)], vec![('l', 0.7), ('1', 0.3)]];
        assert_eq!(run(&steps, cs()).expect("any").text, "Ol");
        let digits = Constraints { numeric: 1, ..cs() };
        assert_eq!(run(&steps, digits).expect("digits").text, "01");
    }

    #[test]
    fn numeric_2_reads_only_letters() {
        let steps = vec![vec![('5', 0.6), ('S', 0.4)], vec![('_', 0.9)], vec![('8', 0.7), ('B', 0.3)]];
        assert_eq!(run(&steps, cs()).expect("any").text, "58");
        let letters = Constraints { numeric: 2, ..cs() };
        assert_eq!(run(&steps, letters).expect("letters").text, "SB");
    }

    #[test]
    fn numeric_3_keeps_one_kind_whichever_is_likelier() {
        // GIVEN 7 (sure) then a B that might be an 8 and a 2 that might be a Z
        let steps = vec![
            vec![('7', 0.95)],
            vec![('_', 0.9)],
            vec![('B', 0.6), ('8', 0.4)],
            vec![('_', 0.9)],
            vec![('2', 0.9), ('Z', 0.1)],
        ];
        assert_eq!(run(&steps, cs()).expect("any").text, "7B2");
        let one_kind = Constraints { numeric: 3, ..cs() };
        assert_eq!(run(&steps, one_kind).expect("one kind").text, "782");
    }

    #[test]
    fn numeric_4_requires_both_kinds() {
        // GIVEN three digits, the middle one possibly a G
        let steps = vec![
            vec![('4', 0.9)],
            vec![('_', 0.9)],
            vec![('6', 0.7), ('G', 0.3)],
            vec![('_', 0.9)],
            vec![('1', 0.9), ('I', 0.05)],
        ];
        assert_eq!(run(&steps, cs()).expect("any").text, "461");
        let both = Constraints { numeric: 4, ..cs() };
        assert_eq!(run(&steps, both).expect("both").text, "4G1");
    }

    #[test]
    fn max_len_drops_the_least_likely_character() {
        // GIVEN a faint fourth character
        let steps = vec![
            vec![('a', 0.9)],
            vec![('_', 0.9)],
            vec![('b', 0.9)],
            vec![('_', 0.9)],
            vec![('c', 0.55), ('_', 0.45)],
            vec![('_', 0.9)],
            vec![('d', 0.9)],
        ];
        assert_eq!(run(&steps, cs()).expect("any").text, "abcd");
        let short = Constraints { max_len: 3, ..cs() };
        assert_eq!(run(&steps, short).expect("max 3").text, "abd");
    }

    #[test]
    fn min_len_keeps_a_faint_character() {
        let steps =
            vec![vec![('a', 0.9)], vec![('_', 0.9)], vec![('_', 0.6), ('x', 0.4)], vec![('_', 0.9)], vec![('b', 0.9)]];
        assert_eq!(run(&steps, cs()).expect("any").text, "ab");
        let long = Constraints { min_len: 3, ..cs() };
        assert_eq!(run(&steps, long).expect("min 3").text, "axb");
        let too_long = Constraints { min_len: 9, ..cs() };
        assert!(matches!(run(&steps, too_long), Err(OcrError::NoValidAnswer)));
    }

    #[test]
    fn min_len_finds_a_character_far_below_the_pruning_gaps() {
        // Step 2 is a blank for certain; `x` is e^-30 there, every other
        // character e^-60. The pruned search drops `x`; the answer must not.
        let classes = charset().classes();
        let x = charset().class_of('x').expect("x");
        let mut data = Vec::new();
        for (t, char_at) in [(0, Some('a')), (1, None), (2, None), (3, None), (4, Some('b'))] {
            let mut row = vec![-60.0f32; classes];
            match char_at {
                Some(c) => row[charset().class_of(c).expect("char")] = 0.0,
                None => row[0] = 0.0,
            }
            if t == 2 {
                row[x] = -30.0;
            }
            data.extend(row);
        }
        let lp = LogProbs::new(5, classes, data).expect("matrix");
        assert_eq!(decode(&lp, &charset(), &cs()).expect("any").text, "ab");
        let long = Constraints { min_len: 3, ..cs() };
        let answer = decode(&lp, &charset(), &long).expect("min 3");
        assert_eq!(answer.text, "axb");
        assert!(answer.confidence < 1e-9, "{}", answer.confidence);
        let too_long = Constraints { min_len: 6, ..cs() };
        assert!(matches!(decode(&lp, &charset(), &too_long), Err(OcrError::NoValidAnswer)));
    }

    #[test]
    fn numeric_4_finds_a_digit_behind_many_likelier_letter_readings() {
        // Three letter steps, each a, b or c: 27 all-letter readings, all far
        // likelier than the one digit, `7` at e^-30 on the middle step. Kept
        // in one beam, the letters would crowd every digit-bearing prefix out.
        let set = charset();
        let classes = set.classes();
        let class = |c: char| set.class_of(c).expect("char");
        let mut data = Vec::new();
        for t in 0..7 {
            let mut row = vec![-60.0f32; classes];
            if t % 2 == 0 {
                row[0] = 0.0;
            } else {
                row[class('a')] = 0.4f32.ln();
                row[class('b')] = 0.3f32.ln();
                row[class('c')] = 0.3f32.ln();
            }
            if t == 3 {
                row[class('7')] = -30.0;
            }
            data.extend(row);
        }
        let lp = LogProbs::new(7, classes, data).expect("matrix");
        let both = Constraints { numeric: 4, ..cs() };
        assert_eq!(decode(&lp, &set, &cs()).expect("any").text, "aaa");
        assert_eq!(decode(&lp, &set, &both).expect("both kinds").text, "a7a");
    }

    #[test]
    fn a_repeated_character_needs_a_blank_between() {
        // GIVEN "ll" read as one long l: min_len 2 must find the blank-separated reading
        let steps = vec![vec![('l', 0.9)], vec![('l', 0.6), ('_', 0.4)], vec![('l', 0.9)]];
        assert_eq!(run(&steps, cs()).expect("any").text, "l");
        let two = Constraints { min_len: 2, ..cs() };
        assert_eq!(run(&steps, two).expect("min 2").text, "ll");
    }

    #[test]
    fn phrase_0_masks_the_space_and_phrase_1_requires_two_words() {
        let mut steps = clear("ab");
        steps.extend(clear("cd"));
        // A faint space in the gap between the words.
        steps.insert(5, vec![('_', 0.7), (' ', 0.3)]);
        // A likely space that phrase=0 must not read.
        let mut spaced = clear("ab");
        spaced.insert(4, vec![(' ', 0.8), ('_', 0.2)]);
        spaced.insert(5, vec![('_', 0.9)]);
        spaced.extend(clear("cd"));
        assert_eq!(run(&spaced, cs()).expect("phrase 0").text, "abcd");
        assert_eq!(run(&steps, cs()).expect("phrase 0").text, "abcd");
        let phrase = Constraints { phrase: true, ..cs() };
        assert_eq!(run(&steps, phrase).expect("phrase 1").text, "ab cd");
        // One word only and nowhere a space: nothing valid.
        assert!(matches!(run(&clear("abcd"), Constraints { phrase: true, ..cs() }), Err(OcrError::NoValidAnswer)));
    }

    #[test]
    fn calc_0_masks_the_symbols() {
        let steps = clear("12+7=?");
        assert_eq!(run(&steps, cs()).expect("calc 0").text, "127");
    }

    #[test]
    fn calc_1_reads_the_expression_and_answers_its_result() {
        let answer = run(&clear("12+7=?"), Constraints { calc: true, ..cs() }).expect("calc");
        assert_eq!((answer.text.as_str(), answer.raw.as_str()), ("19", "12+7=?"));
        let answer = run(&clear("3-15="), Constraints { calc: true, ..cs() }).expect("calc");
        assert_eq!(answer.text, "-12");
        let answer = run(&clear("6*7"), Constraints { calc: true, ..cs() }).expect("calc");
        assert_eq!(answer.text, "42");
    }

    #[test]
    fn calc_1_reads_letters_as_digits_and_follows_the_grammar() {
        // GIVEN an O that is a 0, a t that is a +, and a stray leading '-'
        let steps = vec![
            vec![('-', 0.6), ('_', 0.4)],
            vec![('_', 0.9)],
            vec![('1', 0.9)],
            vec![('_', 0.9)],
            vec![('O', 0.6), ('0', 0.4)],
            vec![('_', 0.9)],
            vec![('t', 0.6), ('+', 0.4)],
            vec![('_', 0.9)],
            vec![('5', 0.9)],
            vec![('=', 0.9)],
        ];
        let answer = run(&steps, Constraints { calc: true, ..cs() }).expect("calc");
        assert_eq!((answer.raw.as_str(), answer.text.as_str()), ("10+5=", "15"));
    }

    #[test]
    fn regsense_0_lower_cases_and_merges_the_cases() {
        let steps = clear("AbC");
        assert_eq!(run(&steps, cs()).expect("regsense 1").text, "AbC");
        let ci = Constraints::default();
        assert_eq!(run(&steps, ci).expect("regsense 0").text, "abc");
        // GIVEN a letter split between its two cases but less likely than a digit alone
        let split = vec![vec![('o', 0.3), ('O', 0.3), ('0', 0.4)]];
        assert_eq!(run(&split, cs()).expect("regsense 1").text, "0");
        assert_eq!(run(&split, ci).expect("regsense 0").text, "o");
    }

    /// `gen.TEXT_MODES` as the shipped model.json lists them.
    fn text_modes() -> AlphabetPrior {
        let digits = "0123456789";
        let upper = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let lower = "abcdefghijklmnopqrstuvwxyz0123456789";
        let all = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        AlphabetPrior::new(&charset(), [(digits, 0.15), (upper, 0.15), (lower, 0.10), (all, 0.60)]).expect("prior")
    }

    fn run_prior(steps: &[Vec<(char, f32)>], c: Constraints) -> Result<Answer, OcrError> {
        let steps: Vec<&[(char, f32)]> = steps.iter().map(Vec::as_slice).collect();
        decode_with_prior(&matrix(&steps), &charset(), &c, Some(&text_modes()))
    }

    /// `text` read clearly, but for `split`'s one step in place of the `at`-th character.
    fn with_split(text: &str, at: usize, split: Vec<(char, f32)>) -> Vec<Vec<(char, f32)>> {
        let mut steps = clear(text);
        steps[2 * at + 1] = split;
        steps
    }

    #[test]
    fn the_alphabet_prior_reads_an_undecided_case_from_the_other_letters() {
        // GIVEN "AB" then a c/C look-alike the model leans, barely, to read lower-case
        let steps = with_split("ABx", 2, vec![('c', 0.52), ('C', 0.48)]);
        assert_eq!(run(&steps, cs()).expect("no prior").text, "ABc");
        // THEN the prior reads it as the upper-case string the other letters make
        let answer = run_prior(&steps, cs()).expect("prior");
        assert_eq!(answer.text, "ABC");
        assert_eq!(answer.raw, "ABC");
        assert!(
            (answer.confidence - 0.48).abs() < 0.01,
            "the confidence is the read sequence's: {}",
            answer.confidence
        );
        // AND among lower-case letters it reads lower-case, once they are
        // enough to outweigh that alphabet's smaller share (0.10 against 0.15)
        let steps = with_split("abx", 2, vec![('C', 0.52), ('c', 0.48)]);
        assert_eq!(run_prior(&steps, cs()).expect("prior").text, "abC");
        let steps = with_split("abdex", 4, vec![('C', 0.52), ('c', 0.48)]);
        assert_eq!(run(&steps, cs()).expect("no prior").text, "abdeC");
        assert_eq!(run_prior(&steps, cs()).expect("prior").text, "abdec");
    }

    #[test]
    fn the_alphabet_prior_keeps_a_clear_mixed_case_reading() {
        let steps = clear("AbC7x");
        assert_eq!(run_prior(&steps, cs()).expect("prior").text, "AbC7x");
        // A confident lower-case letter among upper-case ones is kept too
        let steps = with_split("ABx", 2, vec![('c', 0.9), ('C', 0.1)]);
        assert_eq!(run_prior(&steps, cs()).expect("prior").text, "ABc");
    }

    #[test]
    fn the_alphabet_prior_reads_a_digit_among_digits_also_with_regsense_0() {
        let steps = with_split("1x3", 1, vec![('O', 0.55), ('0', 0.45)]);
        assert_eq!(run(&steps, cs()).expect("no prior").text, "1O3");
        assert_eq!(run_prior(&steps, cs()).expect("prior").text, "103");
        let ci = Constraints::default();
        assert_eq!(run(&steps, ci).expect("no prior").text, "1o3");
        assert_eq!(run_prior(&steps, ci).expect("prior, regsense 0").text, "103");
        // AND with regsense=0 an upper-case reading is lower-cased as ever
        let steps = with_split("ABx", 2, vec![('c', 0.52), ('C', 0.48)]);
        let answer = run_prior(&steps, ci).expect("prior, regsense 0");
        assert_eq!(answer.text, "abc");
        assert!((answer.confidence - 1.0).abs() < 0.01, "both cases count with regsense 0: {}", answer.confidence);
    }

    #[test]
    fn the_alphabet_prior_leaves_the_other_constraints_alone() {
        let steps = with_split("ABx", 2, vec![('c', 0.52), ('C', 0.48)]);
        // Under a numeric rule, or a length bound the best path misses, the
        // answer is as without the prior
        for c in [
            Constraints { max_len: 2, ..cs() },
            Constraints { min_len: 4, ..cs() },
            Constraints { numeric: 2, ..cs() },
            Constraints { numeric: 4, ..cs() },
        ] {
            assert_eq!(run_prior(&steps, c).ok(), run(&steps, c).ok(), "{c:?}");
        }
        // AND a length bound the best path meets changes nothing: the prior's
        // reading, as without the bound
        let free = run_prior(&steps, cs()).expect("no bound");
        assert_eq!(free.text, "ABC");
        for c in [
            Constraints { max_len: 5, ..cs() },
            Constraints { min_len: 2, ..cs() },
            Constraints { min_len: 3, max_len: 3, ..cs() },
        ] {
            assert_eq!(run_prior(&steps, c).expect("bounded"), free, "{c:?}");
        }
        assert_eq!(run_prior(&steps, Constraints { numeric: 2, ..cs() }).expect("letters").text, "ABc");
        // AND a phrase is read as without it
        let steps = with_split("AB Cx", 4, vec![('c', 0.52), ('C', 0.48)]);
        let phrase = Constraints { phrase: true, ..cs() };
        assert_eq!(run_prior(&steps, phrase).expect("phrase").text, "AB Cc");
    }

    #[test]
    fn an_alphabet_the_constraints_mask_is_skipped_not_fatal() {
        // GIVEN a prior whose likeliest alphabet holds only symbols (masked
        // without calc) beside upper-case + digits
        let prior = AlphabetPrior::new(&charset(), [("+-*", 0.5), ("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 0.2)])
            .expect("prior");
        let steps = with_split("ABx", 2, vec![('c', 0.52), ('C', 0.48)]);
        let steps: Vec<&[(char, f32)]> = steps.iter().map(Vec::as_slice).collect();
        // THEN the other alphabet still reads the text
        let answer = decode_with_prior(&matrix(&steps), &charset(), &cs(), Some(&prior)).expect("read");
        assert_eq!(answer.text, "ABC");
    }

    #[test]
    fn an_alphabet_prior_must_fit_the_charset_and_sum_to_at_most_one() {
        let cs = charset();
        assert!(AlphabetPrior::new(&cs, [("0123456789", 1.0)]).is_ok());
        for (modes, why) in [
            (vec![], "no alphabet"),
            (vec![("", 0.5)], "empty"),
            (vec![("01", 0.0)], "zero share"),
            (vec![("01", f64::NAN)], "NaN share"),
            (vec![("01", 0.7), ("ab", 0.7)], "sum above 1"),
            (vec![("0\u{e9}", 0.5)], "not in the charset"),
            (vec![("00", 0.5)], "repeat"),
        ] {
            match AlphabetPrior::new(&cs, modes) {
                Err(OcrError::Model(msg)) => assert!(msg.starts_with("alphabet_prior"), "{why}: {msg}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn calc_grammar() {
        let ok = |s: &str| calc_state(s.chars()).is_some_and(CalcState::is_complete);
        for good in ["1+2", "123*456", "9-10=", "12+7=?"] {
            assert!(ok(good), "{good}");
        }
        for bad in ["", "1", "1+", "1234+1", "+1", "1+2?", "1+2=?=", "1++2", "1+2=3"] {
            assert!(!ok(bad), "{bad}");
        }
        assert_eq!(evaluate_calc("999*999=?"), Some(998_001));
        assert_eq!(evaluate_calc("1-999"), Some(-998));
    }

    #[test]
    fn a_class_count_mismatch_is_a_model_error() {
        let lp = LogProbs::new(1, 5, vec![0.0; 5]).expect("matrix");
        assert!(matches!(decode(&lp, &charset(), &cs()), Err(OcrError::Model(_))));
        assert!(LogProbs::new(2, 5, vec![0.0; 9]).is_err());
        assert!(Charset::new("aa").is_err());
    }
}
