//! The harness's metrics and their aggregation: `acc`, `acc_norm` (log-likelihood over the
//! choice's length in characters), `mean_stderr` (sample standard deviation / √n), LAMBADA's
//! perplexity `exp(-mean ll)`, and GSM8K's answer filters and exact match.

/// Mean and `mean_stderr` (None below two values, where the harness divides by zero).
pub fn mean_stderr(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, None);
    }
    let mu = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mu, None);
    }
    let var = xs.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (n - 1.0);
    (mu, Some(var.sqrt() / n.sqrt()))
}

/// First index of the largest value (numpy's argmax).
pub fn argmax_f64(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// The choice `acc_norm` picks: log-likelihood divided by the choice's length in characters
/// (Python `len`, code points).
pub fn pred_norm(lls: &[f64], choices: &[String]) -> usize {
    let norm: Vec<f64> = lls
        .iter()
        .zip(choices)
        .map(|(ll, c)| ll / c.chars().count() as f64)
        .collect();
    argmax_f64(&norm)
}

/// GSM8K "strict-match": the first `#### (\-?[0-9\.\,]+)` group, else "[invalid]".
pub fn gsm8k_strict(text: &str) -> String {
    let num = |c: char| c.is_ascii_digit() || c == '.' || c == ',';
    let mut from = 0;
    while let Some(i) = text[from..].find("#### ") {
        let rest = &text[from + i + 5..];
        let body = rest.strip_prefix('-').unwrap_or(rest);
        let len = body.find(|c: char| !num(c)).unwrap_or(body.len());
        if len > 0 {
            let sign = rest.len() - body.len();
            return rest[..sign + len].to_string();
        }
        from += i + 1;
    }
    "[invalid]".into()
}

/// GSM8K "flexible-extract": the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`, else
/// "[invalid]" (leftmost-first matching as Python's `re.findall`).
pub fn gsm8k_flexible(text: &str) -> String {
    let b = text.as_bytes();
    let class = |c: u8| c.is_ascii_digit() || c == b'$' || c == b'.' || c == b',';
    let run =
        |from: usize, ok: &dyn Fn(u8) -> bool| b[from..].iter().take_while(|&&c| ok(c)).count();
    let mut last = None;
    let mut i = 0;
    while i < b.len() {
        let sign = usize::from(b[i] == b'-');
        let first = run(i + sign, &class);
        let found = if first >= 2 {
            Some(sign + first)
        } else {
            let digits = run(i + sign, &|c: u8| c.is_ascii_digit());
            (digits >= 1).then_some(sign + digits)
        };
        match found {
            Some(len) => {
                last = Some(&text[i..i + len]);
                i += len;
            }
            None => i += 1,
        }
    }
    last.map_or_else(|| "[invalid]".into(), str::to_string)
}

/// The exact_match normalisation of gsm8k.yaml: drop ",", "$", everything up to "#### " and a
/// final ".", ignore case.
pub fn gsm8k_normalise(s: &str) -> String {
    let s = s.replace([',', '$'], "");
    let s = match s.rfind("#### ") {
        Some(i) => s[i + 5..].to_string(),
        None => s,
    };
    let s = s.strip_suffix('.').unwrap_or(&s);
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_the_harness_mean_stderr() {
        let (m, se) = mean_stderr(&[1.0, 0.0, 1.0, 1.0]);
        assert_eq!(m, 0.75);
        // sqrt(0.25 * 4 / 3 / 4)
        assert!((se.unwrap() - (0.75f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_stderr(&[1.0]).1, None);
    }

    #[test]
    fn acc_norm_divides_by_characters() {
        let choices = vec!["ab".to_string(), "abcdé".to_string()];
        assert_eq!(argmax_f64(&[-2.0, -3.0]), 0);
        assert_eq!(pred_norm(&[-2.0, -3.0], &choices), 1);
    }

    #[test]
    fn gsm8k_filters_as_the_regexes() {
        assert_eq!(gsm8k_strict("so 5 #### -1,234.5\n"), "-1,234.5");
        assert_eq!(gsm8k_strict("#### x #### 7"), "7");
        assert_eq!(gsm8k_strict("the answer is 5"), "[invalid]");
        assert_eq!(gsm8k_flexible("It costs $18. Then 3 more: 21."), "21.");
        assert_eq!(gsm8k_flexible("a 5 b 7 c"), "7");
        assert_eq!(gsm8k_flexible("x -4"), "-4");
        assert_eq!(gsm8k_flexible("none"), "[invalid]");
        assert_eq!(gsm8k_flexible("- -- $1"), "$1");
        assert_eq!(gsm8k_normalise("Janet ... #### 1,800"), "1800");
        assert_eq!(gsm8k_normalise("$18."), "18");
    }
}
