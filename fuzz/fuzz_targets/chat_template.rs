//! Chat templates: an arbitrary Jinja source compiled (`ChatTemplate::new`) and rendered with
//! a fixed conversation, with and without the generation prompt. Must neither panic nor hang
//! (minijinja's fuel and recursion limits are set in `ChatTemplate::new`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slm_data::chat::{ChatTemplate, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = ChatTemplate::new(source, "fuzz") else {
        return;
    };
    let t = t.with_special_tokens(Some("<s>".into()), Some("</s>".into()));
    let messages = [
        Message::system("You are helpful."),
        Message::user("Hi {{ there }} <|im_end|>"),
        Message::assistant("Hello!"),
        Message::user("Tell me a story."),
    ];
    let _ = t.render(&messages, true);
    let _ = t.render(&messages[1..2], false);
});
