//! `load_tokenizer` on what `slm_io::load_model` finds in real model files.

mod common;

use slm_data::load_tokenizer;

#[test]
fn gguf_model_vocabulary() {
    let Some(path) = common::data_file("gguf/llama-2-tiny-random.gguf") else {
        return;
    };
    let model = slm_io::load_model(path.to_str().unwrap(), None).unwrap();
    let t = load_tokenizer(&model.tokenizer).unwrap();
    assert_eq!(t.kind(), "gguf-llama");
    assert_eq!(t.vocab_size(), 32000);
    assert_eq!(t.encode("Hello world", true).unwrap(), vec![1, 15043, 3186]);
}

#[test]
fn llama2c_checkpoint_with_tokenizer() {
    let (Some(ckpt), Some(tok)) = (
        common::data_file("llama2c/stories260K.bin"),
        common::data_file("llama2c/tok512.bin"),
    ) else {
        return;
    };
    let model = slm_io::load_model(ckpt.to_str().unwrap(), Some(&tok)).unwrap();
    let t = load_tokenizer(&model.tokenizer).unwrap();
    assert_eq!(t.kind(), "llama2c");
    assert_eq!(
        t.encode("Once upon a time", true).unwrap(),
        vec![1, 403, 407, 261, 378]
    );
}
