//! The KD loss kinds by name: `fkl`, `rkl`, `jsd:β`, `skl:α`, `srkl:α`, `tvd`, as settings
//! files and the command line write them.
//!
//! The divergences themselves are fused kernels over the vocabulary
//! (`slm_kernels::distill`, where [`KdLoss`] is the kernel's parameter and its module
//! documentation gives the formulas); this module reads and writes their names.

use slm_core::{Error, Result};
pub use slm_kernels::distill::{DistillSpec, KdLoss};

/// Parses `fkl`, `rkl`, `jsd:β`, `skl:α`, `srkl:α` or `tvd` (e.g. `jsd:0.5`; JSD's β
/// defaults to 0.5 and the skew α to 0.1).
pub fn parse(s: &str) -> Result<KdLoss> {
    let (name, arg) = match s.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (s.trim(), None),
    };
    let unit = |what: &str, default: f32| -> Result<f32> {
        let v = match arg {
            Some(a) => a.parse::<f32>().map_err(|_| {
                Error::invalid(format!(
                    "distillation loss `{s}`: {what} `{a}` is not a number"
                ))
            })?,
            None => default,
        };
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::invalid(format!(
                "distillation loss `{s}`: {what} must be in [0, 1]"
            )));
        }
        Ok(v)
    };
    let plain = |l: KdLoss| -> Result<KdLoss> {
        match arg {
            None => Ok(l),
            Some(_) => Err(Error::invalid(format!(
                "distillation loss `{name}` takes no argument"
            ))),
        }
    };
    match name {
        "fkl" | "forward_kl" | "kl" => plain(KdLoss::ForwardKl),
        "rkl" | "reverse_kl" => plain(KdLoss::ReverseKl),
        "tvd" => plain(KdLoss::Tvd),
        "jsd" => Ok(KdLoss::Jsd {
            beta: unit("β", 0.5)?,
        }),
        "skl" | "skew_kl" => Ok(KdLoss::SkewKl {
            alpha: unit("α", 0.1)?,
        }),
        "srkl" | "skew_reverse_kl" => Ok(KdLoss::SkewReverseKl {
            alpha: unit("α", 0.1)?,
        }),
        _ => Err(Error::invalid(format!(
            "unknown distillation loss `{s}`: expected fkl, rkl, jsd:β, skl:α, srkl:α or tvd"
        ))),
    }
}

/// The name [`parse`] reads back.
pub fn name(loss: KdLoss) -> String {
    match loss {
        KdLoss::ForwardKl => "fkl".into(),
        KdLoss::ReverseKl => "rkl".into(),
        KdLoss::Tvd => "tvd".into(),
        KdLoss::Jsd { beta } => format!("jsd:{beta}"),
        KdLoss::SkewKl { alpha } => format!("skl:{alpha}"),
        KdLoss::SkewReverseKl { alpha } => format!("srkl:{alpha}"),
    }
}

/// Serde by name, for settings files: `#[serde(with = "crate::loss::by_name")]`.
pub mod by_name {
    use super::KdLoss;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(loss: &KdLoss, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::name(*loss))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KdLoss, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_bad_ones_are_refused() {
        for bad in ["jsd?", "jsd:2", "skl:x", "fkl:0.3"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for l in [
            KdLoss::ForwardKl,
            KdLoss::ReverseKl,
            KdLoss::Jsd { beta: 0.3 },
            KdLoss::SkewKl { alpha: 0.1 },
            KdLoss::SkewReverseKl { alpha: 0.2 },
            KdLoss::Tvd,
        ] {
            assert_eq!(parse(&name(l)).unwrap(), l);
        }
        assert_eq!(parse("jsd").unwrap(), KdLoss::Jsd { beta: 0.5 });
    }
}
