//! The recipe file: a `[recipe]` header and an ordered list of `[[stage]]` tables, each with
//! a `name` (its folder under the run root) and exactly one kind table (`[stage.prepare]`,
//! `[stage.train]`, `[stage.distill]`, `[stage.recover]`, `[stage.prune]`,
//! `[stage.structured]`, `[stage.quantize]`, `[stage.export]`, `[stage.evaluate]`). docs/RECIPES.md describes every
//! key.
//!
//! Parsing refuses unknown keys (`deny_unknown_fields`) and [`Recipe::check`] refuses missing
//! inputs (files, or stages that are not earlier in the recipe), each error naming the recipe
//! line, before any stage runs. A reference to an input is a string: the name of an earlier
//! stage (its output) or else a path.

use crate::prune::MethodName;
use serde::Deserialize;
use slm_core::{Error, Result};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The recipes shipped in the binary: (name, TOML).
pub const BUILTIN: [(&str, &str); 3] = [
    ("quickstart", include_str!("../recipes/quickstart.toml")),
    (
        "quickstart-tiny",
        include_str!("../recipes/quickstart-tiny.toml"),
    ),
    ("minitron", include_str!("../recipes/minitron.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeToml {
    recipe: Header,
    #[serde(default)]
    stage: Vec<StageToml>,
}

/// `[recipe]`: what the recipe is called and where it runs by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Run root when none is given (default `runs/NAME`).
    pub out: Option<PathBuf>,
    /// Seed every stage uses unless it sets its own.
    #[serde(default = "one")]
    pub seed: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageToml {
    name: Spanned<String>,
    prepare: Option<Prepare>,
    train: Option<Train>,
    distill: Option<Train>,
    recover: Option<Train>,
    prune: Option<Prune>,
    structured: Option<Structured>,
    quantize: Option<Quantize>,
    export: Option<Export>,
    evaluate: Option<Evaluate>,
}

/// A reference to an input: an earlier stage's name or a path, with its place in the file.
pub type Ref = Spanned<String>;

/// The built-in story corpus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stories {
    /// Bytes of stories to generate.
    pub bytes: usize,
    /// Default: the recipe seed (prepare) or the recipe seed + 1,000,003 (evaluate).
    pub seed: Option<u64>,
}

/// `[stage.prepare]`: corpus → tokenizer → train/val token shards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prepare {
    /// Generate the built-in story corpus (written to corpus.txt) ...
    pub stories: Option<Stories>,
    /// ... or read these files, folders or globs.
    #[serde(default)]
    pub inputs: Vec<Ref>,
    /// An existing tokenizer (tokenizer.json, llama2.c tokenizer.bin, or a GGUF model's vocabulary) ...
    pub tokenizer: Option<Ref>,
    /// ... or train a byte-level BPE tokenizer of this size on the corpus.
    pub bpe_vocab: Option<usize>,
    #[serde(default = "val_fraction")]
    pub val_fraction: f64,
    pub seed: Option<u64>,
}

fn val_fraction() -> f64 {
    0.05
}

/// `[stage.train]`, `[stage.distill]` and `[stage.recover]`: a training run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// Prepared data: a prepare stage or a folder made by `slm data prepare`.
    pub data: Ref,
    /// Starting model (recover: the pruned model).
    pub init: Option<Ref>,
    /// Teacher (distill: required; recover: the dense parent, optional).
    pub teacher: Option<Ref>,
    /// Keep the starting model's zeros (default: true for recover, else false).
    pub hold_masks: Option<bool>,
    /// distill: a student with the teacher's layers and this share of its widths.
    pub student_width: Option<f64>,
    /// `slm train` settings, as in its --config file.
    pub config: Option<Spanned<toml::Table>>,
    /// Settings applied after `config` (`key=value`, as `slm train --set`).
    #[serde(skip)]
    pub sets: Vec<String>,
}

/// `[stage.prune]`: one pruning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    pub model: Ref,
    pub method: MethodName,
    #[serde(default = "half")]
    pub sparsity: f64,
    /// unstructured or N:M.
    pub pattern: Option<Spanned<String>>,
    /// Calibration text: a file, or a prepare stage (its corpus.txt, else its train.bin).
    pub calib: Option<Ref>,
    pub nsamples: Option<usize>,
    pub seqlen: Option<usize>,
    pub seed: Option<u64>,
    /// Comma list of q,k,v,o,gate,up,down.
    pub roles: Option<Spanned<String>>,
    #[serde(default)]
    pub measure_error: bool,
}

fn half() -> f64 {
    0.5
}

/// `[stage.structured]`: structured pruning into a smaller dense model (`slm prune
/// --structured`): explicit sizes, or `target_params` with the candidate search.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Structured {
    pub model: Ref,
    /// Calibration text: a file, or a prepare stage (its corpus.txt, else its train.bin).
    pub calib: Ref,
    pub nsamples: Option<usize>,
    pub seqlen: Option<usize>,
    pub seed: Option<u64>,
    /// Non-embedding parameters (`"53M"`) or a fraction of the parent's (`"0.5"`).
    pub target_params: Option<String>,
    pub layers: Option<usize>,
    pub hidden: Option<usize>,
    pub heads: Option<usize>,
    pub kv_heads: Option<usize>,
    pub mlp: Option<usize>,
    /// l2 (default), mean, variance or random.
    pub importance: Option<Spanned<String>>,
    /// bi (default) or loss.
    pub layer_metric: Option<Spanned<String>>,
    /// Windows scoring the layer-removal loss and the candidates (default 16).
    pub score_samples: Option<usize>,
}

/// `[stage.quantize]`: a GGUF file of block-quantised weights (model.gguf).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantize {
    pub model: Ref,
    /// q8_0, q4_1 or q4_0.
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    #[serde(default)]
    pub gptq: bool,
    pub calib: Option<Ref>,
    pub nsamples: Option<usize>,
    pub seqlen: Option<usize>,
    pub seed: Option<u64>,
    pub damp: Option<f64>,
}

/// Formats of `[stage.export]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Hf,
    Gguf,
}

/// `[stage.export]`: the model as a Hugging Face folder or a GGUF file (model.gguf).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub model: Ref,
    pub format: ExportFormat,
    /// gguf: f32, f16 (default), q8_0, q4_0 or q4_1.
    #[serde(rename = "type")]
    pub ty: Option<Spanned<String>>,
}

/// `[stage.evaluate]`: perplexity, size, decode speed and samples of models side by side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    pub models: Vec<Ref>,
    /// Text to score: a file ...
    pub text: Option<Ref>,
    /// ... or fresh built-in stories (scored story by story).
    pub stories: Option<Stories>,
    /// Score documents separately, split on this string.
    pub doc_separator: Option<String>,
    /// Window length (default: each model's context).
    pub ctx: Option<usize>,
    /// Prompts each model continues (in the report).
    #[serde(default)]
    pub prompts: Vec<String>,
    #[serde(default = "forty")]
    pub max_tokens: usize,
    #[serde(default = "temperature")]
    pub temperature: f32,
    /// Time greedy decoding (64 tokens).
    #[serde(default = "yes")]
    pub speed: bool,
}

fn forty() -> usize {
    40
}
fn temperature() -> f32 {
    0.8
}
fn yes() -> bool {
    true
}

/// What a stage does.
#[derive(Debug, Clone)]
pub enum Kind {
    Prepare(Prepare),
    Train(Train),
    Distill(Train),
    Recover(Train),
    Prune(Prune),
    Structured(Structured),
    Quantize(Quantize),
    Export(Export),
    Evaluate(Evaluate),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Prepare(_) => "prepare",
            Kind::Train(_) => "train",
            Kind::Distill(_) => "distill",
            Kind::Recover(_) => "recover",
            Kind::Prune(_) => "prune",
            Kind::Structured(_) => "structured",
            Kind::Quantize(_) => "quantize",
            Kind::Export(_) => "export",
            Kind::Evaluate(_) => "evaluate",
        }
    }

    /// The training settings of a train, distill or recover stage.
    pub fn train_mut(&mut self) -> Option<&mut Train> {
        match self {
            Kind::Train(t) | Kind::Distill(t) | Kind::Recover(t) => Some(t),
            _ => None,
        }
    }
}

/// One stage: its name (= folder), the line of its `[[stage]]` table, what it does.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub line: usize,
    pub kind: Kind,
}

/// What a reference must point to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A prepared data folder.
    Data,
    /// A model (folder or file).
    Model,
    /// A text or token file.
    Text,
}

/// A parsed recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub header: Header,
    pub stages: Vec<Stage>,
    /// "FILE" or "built-in recipe `NAME`", for messages.
    pub origin: String,
    src: String,
}

/// The 1-based line of byte `offset` in `src`.
fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Recipe {
    /// A built-in recipe by name.
    pub fn builtin(name: &str) -> Result<Self> {
        let Some((_, src)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
            return Err(Error::invalid(format!(
                "no recipe file `{name}` and no built-in recipe of that name (built-in: {})",
                BUILTIN.map(|(n, _)| n).join(", ")
            )));
        };
        Self::parse(src, &format!("built-in recipe `{name}`"))
    }

    /// A recipe file, or else a built-in recipe of that name.
    pub fn load(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_file() {
            let src = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            Self::parse(&src, spec)
        } else {
            Self::builtin(spec)
        }
    }

    /// Parses recipe text; `origin` names it in messages. Checks the shape (unknown keys,
    /// one kind per stage, unique stage names), not the inputs: see [`Recipe::check`].
    pub fn parse(src: &str, origin: &str) -> Result<Self> {
        let at = |offset: Option<usize>, msg: &str| match offset {
            Some(o) => Error::config(format!("{origin}, line {}: {msg}", line_of(src, o))),
            None => Error::config(format!("{origin}: {msg}")),
        };
        let file: RecipeToml =
            toml::from_str(src).map_err(|e| at(e.span().map(|s| s.start), e.message().trim()))?;
        let mut stages: Vec<Stage> = Vec::new();
        for st in file.stage {
            let (name, name_at) = (st.name.get_ref().clone(), st.name.span().start);
            let bad = name.is_empty()
                || name.starts_with('.')
                || name.contains(['/', '\\'])
                || name == "report.md";
            if bad {
                return Err(at(
                    Some(name_at),
                    &format!("stage name `{name}` cannot be a folder name"),
                ));
            }
            if stages.iter().any(|s| s.name == name) {
                return Err(at(Some(name_at), &format!("a second stage named `{name}`")));
            }
            let kinds: Vec<Kind> = [
                st.prepare.map(Kind::Prepare),
                st.train.map(Kind::Train),
                st.distill.map(Kind::Distill),
                st.recover.map(Kind::Recover),
                st.prune.map(Kind::Prune),
                st.structured.map(Kind::Structured),
                st.quantize.map(Kind::Quantize),
                st.export.map(Kind::Export),
                st.evaluate.map(Kind::Evaluate),
            ]
            .into_iter()
            .flatten()
            .collect();
            let [kind] = <[Kind; 1]>::try_from(kinds).map_err(|k| {
                at(
                    Some(name_at),
                    &format!(
                    "stage `{name}` needs exactly one of prepare, train, distill, recover, prune, \
                     structured, quantize, export, evaluate (it has {})",
                    k.len()
                ),
                )
            })?;
            stages.push(Stage {
                name,
                line: line_of(src, name_at),
                kind,
            });
        }
        if stages.is_empty() {
            return Err(at(None, "no stages: add [[stage]] tables"));
        }
        Ok(Self {
            header: file.recipe,
            stages,
            origin: origin.into(),
            src: src.into(),
        })
    }

    /// An error at the place of `span` in the recipe.
    pub fn error_at(&self, offset: usize, msg: impl std::fmt::Display) -> Error {
        Error::config(format!(
            "{}, line {}: {msg}",
            self.origin,
            line_of(&self.src, offset)
        ))
    }

    /// The line of the first key of `table` (at `span`) that `msg` names in backticks, else
    /// the table's own line: where an error of the training settings points.
    pub fn config_error(&self, table: &Spanned<toml::Table>, stage: &str, e: Error) -> Error {
        // The trainer's own message, without its "config error: " prefix.
        let msg = match e {
            Error::Config(m) => m,
            other => other.to_string(),
        };
        let span = table.span();
        let text = &self.src[span.start.min(self.src.len())..span.end.min(self.src.len())];
        let named = msg
            .split('`')
            .skip(1)
            .step_by(2)
            .find(|k| table.get_ref().contains_key(*k));
        let offset = named
            .and_then(|k| {
                text.match_indices(k).find(|(i, _)| {
                    let after = text[i + k.len()..].trim_start();
                    let before = text[..*i].chars().last();
                    after.starts_with('=')
                        && before.is_none_or(|c| !c.is_alphanumeric() && c != '_')
                })
            })
            .map(|(i, _)| span.start + i)
            .unwrap_or(span.start);
        self.error_at(offset, format!("stage `{stage}`: training settings: {msg}"))
    }

    /// The index of the stage named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The stage named `name`, to adjust a built-in recipe.
    pub fn stage_mut(&mut self, name: &str) -> Option<&mut Stage> {
        self.stages.iter_mut().find(|s| s.name == name)
    }

    /// Where reference `r` of stage `i` points under the run root `root`: an earlier stage's
    /// output, else the path itself. Refuses later or unsuitable stages and missing paths.
    pub fn resolve(&self, root: &Path, i: usize, r: &Ref, want: Want) -> Result<PathBuf> {
        let name = r.get_ref();
        let here = &self.stages[i].name;
        if let Some(j) = self.index(name) {
            if j >= i {
                return Err(self.error_at(
                    r.span().start,
                    format!("stage `{here}` uses stage `{name}`, which does not come before it"),
                ));
            }
            let dir = root.join(name);
            let out = match (&self.stages[j].kind, want) {
                (Kind::Prepare(_), Want::Data) => Some(dir),
                (Kind::Prepare(p), Want::Text) => Some(dir.join(if p.stories.is_some() {
                    "corpus.txt"
                } else {
                    "train.bin"
                })),
                (
                    Kind::Train(_)
                    | Kind::Distill(_)
                    | Kind::Recover(_)
                    | Kind::Prune(_)
                    | Kind::Structured(_),
                    Want::Model,
                ) => Some(dir),
                (Kind::Export(e), Want::Model) if e.format == ExportFormat::Hf => Some(dir),
                (Kind::Export(_) | Kind::Quantize(_), Want::Model) => Some(dir.join("model.gguf")),
                _ => None,
            };
            return out.ok_or_else(|| {
                self.error_at(
                    r.span().start,
                    format!(
                        "stage `{here}` wants {} but stage `{name}` ({}) makes none",
                        match want {
                            Want::Data => "prepared data",
                            Want::Model => "a model",
                            Want::Text => "text",
                        },
                        self.stages[j].kind.name()
                    ),
                )
            });
        }
        let path = PathBuf::from(name);
        let hf_id = want == Want::Model
            && slm_io::hf_cache::looks_like_repo_id(name)
            && slm_io::hf_cache::resolve(name).is_ok();
        if path.exists() || hf_id {
            Ok(path)
        } else {
            Err(self.error_at(
                r.span().start,
                format!(
                    "stage `{here}`: `{name}` is neither an earlier stage nor an existing file"
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"[recipe]
name = "t"

[[stage]]
name = "data"
[stage.prepare]
stories = { bytes = 1000 }
bpe_vocab = 300

[[stage]]
name = "model"
[stage.train]
data = "data"
[stage.train.config]
steps = 3
"#;

    fn err(src: &str) -> String {
        match Recipe::parse(src, "r.toml")
            .and_then(|r| crate::run::check(&r, Path::new("/tmp/none")))
        {
            Ok(_) => panic!("accepted:\n{src}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn builtin_recipes_parse_and_check() {
        for (name, src) in BUILTIN {
            let r = Recipe::builtin(name).unwrap();
            if src.contains("../shared/data") {
                // Paths into the shared data, relative to the repository root: checked
                // against the data where it is (skipped without it, failing under CI).
                let Some(data) = slm_core::testdata::shared_data("models") else {
                    continue;
                };
                let shared = data.parent().unwrap().display().to_string();
                let r = Recipe::parse(&src.replace("../shared/data", &shared), name).unwrap();
                crate::run::check(&r, Path::new("/tmp/none")).unwrap();
                assert!(r.stages.len() >= 4);
                continue;
            }
            crate::run::check(&r, Path::new("/tmp/none")).unwrap();
            assert!(r.stages.len() >= 5);
        }
        let r = Recipe::parse(GOOD, "r.toml").unwrap();
        assert_eq!((r.stages[1].name.as_str(), r.stages[1].line), ("model", 11));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = err(&GOOD.replace("bpe_vocab = 300", "bpe_vocab = 300\nbogus = 1"));
        assert!(e.contains("r.toml, line 9") && e.contains("bogus"), "{e}");
        let e = err(&GOOD.replace("[stage.train]\n", "[stage.trian]\n"));
        assert!(e.contains("line 12") && e.contains("trian"), "{e}");
        // Training settings are checked by the trainer's own config, at the key's line.
        let e = err(&GOOD.replace("steps = 3", "steps = 3\nwarmup = 2"));
        assert!(e.contains("line 16") && e.contains("warmup"), "{e}");
        let e = err(&GOOD.replace("[recipe]\n", "[recipe]\nowner = 1\n"));
        assert!(e.contains("line 2") && e.contains("owner"), "{e}");
    }

    #[test]
    fn missing_inputs_and_later_stages_are_refused_with_their_line() {
        let e = err(&GOOD.replace("data = \"data\"", "data = \"/no/such/data\""));
        assert!(e.contains("line 13") && e.contains("/no/such/data"), "{e}");
        let swapped = GOOD.replace("name = \"data\"", "name = \"x\"");
        let e = err(&swapped);
        assert!(
            e.contains("line 13") && e.contains("neither an earlier stage"),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[[stage]]\nname = \"model\"\n[stage.prune]\nmodel = \"model\"\nmethod = \"magnitude\"\n"));
        assert!(e.contains("line 18") && e.contains("second stage"), "{e}");
        let e = err(&format!("{GOOD}\n[[stage]]\nname = \"p\"\n[stage.prune]\nmodel = \"model\"\nmethod = \"wanda\"\n"));
        assert!(
            e.contains("line 18") && e.contains("needs calibration"),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[[stage]]\nname = \"p\"\n[stage.prune]\nmodel = \"p2\"\nmethod = \"magnitude\"\n[[stage]]\nname = \"p2\"\n[stage.prune]\nmodel = \"model\"\nmethod = \"magnitude\"\n"));
        assert!(
            e.contains("line 20") && e.contains("does not come before"),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[[stage]]\nname = \"p\"\n[stage.prune]\nmodel = \"model\"\nmethod = \"lottery\"\n"));
        assert!(e.contains("line 21") && e.contains("lottery"), "{e}");
    }
}
