//! `slm serve`'s request bodies: arbitrary bytes parsed as an OpenAI chat or completion request
//! (`parse_chat`, `parse_completion`) and, where they parse, checked and tokenised into the
//! engine's plan (`plan_chat`, `plan_completion`) with a small BPE tokenizer and a ChatML
//! template. The first byte picks the route. Must answer an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slm_data::chat::ChatTemplate;
use slm_data::tokenizer::{HfTokenizer, SpecialTokens, Tokenizer};
use slm_infer::SamplerConfig;
use slm_serve::request::{self, Limits};
use std::sync::OnceLock;

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

struct Fixture {
    tokenizer: HfTokenizer,
    template: ChatTemplate,
    limits: Limits,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tokenizer = HfTokenizer::from_bytes(
            include_bytes!("../seeds/tokenizer_json/bpe.json"),
            &SpecialTokens::default(),
        )
        .expect("the seed tokenizer loads");
        let template = ChatTemplate::new(TEMPLATE, "fuzz").expect("the ChatML template compiles");
        let limits = Limits {
            context: 256,
            max_n: 4,
            vocab_size: tokenizer.vocab_size(),
            defaults: SamplerConfig::default(),
        };
        Fixture { tokenizer, template, limits }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    if route % 2 == 0 {
        if let Ok(r) = request::parse_chat(body) {
            let _ = request::plan_chat(&r, Some(&f.template), &f.tokenizer, &f.limits);
            let _ = request::plan_chat(&r, None, &f.tokenizer, &f.limits);
        }
    } else if let Ok(r) = request::parse_completion(body) {
        let _ = request::plan_completion(&r, &f.tokenizer, &f.limits);
    }
});
