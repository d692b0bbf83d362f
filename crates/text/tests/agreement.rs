//! cogrpo's tokenizers and chat templates against Hugging Face's Python
//! libraries, on the references `bench/text_fixtures.py` wrote (with the
//! versions it names): identical ids and decoded text on 1,000 strings for
//! a byte-level BPE and a Metaspace BPE, identical prompts for three chat
//! templates, and the same conversations refused.

use std::path::{Path, PathBuf};

use serde_json::Value;
use text::{ChatTemplate, Message, TextTokenizer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizers_agree_with_python_on_1000_strings() {
    let refs = read("encodings.json");
    let strings: Vec<&str> = refs["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(strings.len(), 1000);
    for name in ["bpe", "metaspace"] {
        let tok =
            TextTokenizer::from_file(&fixtures().join(format!("{name}.tokenizer.json"))).unwrap();
        let r = &refs[name];
        let mut agree = [0usize; 4];
        for (i, s) in strings.iter().enumerate() {
            let with = tok.encode(s, true).unwrap();
            let plain = tok.encode(s, false).unwrap();
            let checks = [
                with == ids(&r["ids"][i]),
                plain == ids(&r["ids_plain"][i]),
                tok.decode(&with, false).unwrap() == r["decoded"][i].as_str().unwrap(),
                tok.decode(&with, true).unwrap() == r["decoded_skip"][i].as_str().unwrap(),
            ];
            for (k, ok) in checks.iter().enumerate() {
                agree[k] += usize::from(*ok);
            }
            assert!(
                checks.iter().all(|&c| c),
                "{name} string {i} {s:?}: {checks:?}"
            );
        }
        println!(
            "{name}: ids {}/1000, plain ids {}/1000, decoded {}/1000, decoded skipping specials {}/1000",
            agree[0], agree[1], agree[2], agree[3]
        );
    }
}

#[test]
fn special_tokens_and_kinds_are_read() {
    let bpe = TextTokenizer::from_file(&fixtures().join("bpe.tokenizer.json")).unwrap();
    assert_eq!(bpe.kind(), "BPE, ByteLevel");
    assert_eq!(bpe.vocab_size(), 1000);
    let specials = bpe.special_tokens();
    assert_eq!(specials[0], ("<|endoftext|>".to_string(), 0));
    assert!(specials.iter().any(|(t, _)| t == "<|mdm_mask|>"));
    // A special token in the text is one id.
    let mask = bpe.token_to_id("<|mdm_mask|>").unwrap();
    assert!(bpe.encode("a<|mdm_mask|>b", false).unwrap().contains(&mask));
    let meta = TextTokenizer::from_file(&fixtures().join("metaspace.tokenizer.json")).unwrap();
    assert_eq!(meta.kind(), "BPE, Metaspace");
    // Its post-processor puts <s> first, as Llama's does.
    let s = meta.token_to_id("<s>").unwrap();
    assert_eq!(meta.encode("To be", true).unwrap()[0], s);
    let e = TextTokenizer::from_file(&fixtures().join("chat.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("chat.json") && e.contains("not a tokenizer.json"),
        "{e}"
    );
}

#[test]
fn chat_templates_render_what_transformers_renders() {
    let refs = read("chat.json");
    let conversations: Vec<Vec<Message>> =
        serde_json::from_value(refs["conversations"].clone()).unwrap();
    let mut rendered = 0;
    for (name, t) in refs["templates"].as_object().unwrap() {
        let text = |k: &str| t[k].as_str().map(str::to_string);
        let template = ChatTemplate::new(
            t["template"].as_str().unwrap(),
            text("bos_token"),
            text("eos_token"),
            Path::new(name),
        );
        for (i, conv) in conversations.iter().enumerate() {
            let want = &refs["rendered"][name][i];
            for (g, gen_prompt) in [false, true].into_iter().enumerate() {
                let got = template.apply(conv, gen_prompt);
                if want.is_null() {
                    let e = got.unwrap_err().to_string();
                    assert!(e.contains("roles must alternate"), "{name} {i}: {e}");
                } else {
                    assert_eq!(
                        got.unwrap(),
                        want[g].as_str().unwrap(),
                        "{name} {i} {gen_prompt}"
                    );
                    rendered += 1;
                }
            }
        }
    }
    // 3 templates x 5 conversations x 2, less the one Llama-2 refuses.
    assert_eq!(rendered, 28);
}

#[test]
fn a_model_directorys_template_comes_from_its_tokenizer_config() {
    let dir = std::env::temp_dir().join(format!("text-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(ChatTemplate::from_dir(&dir).unwrap().is_none());
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>",
            "chat_template": [{"name": "tool_use", "template": "x"},
                              {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}"#,
    )
    .unwrap();
    let t = ChatTemplate::from_dir(&dir).unwrap().unwrap();
    assert_eq!(t.apply(&[Message::user("hi")], false).unwrap(), "<s>hi</s>");
    std::fs::write(dir.join("chat_template.jinja"), "[{{ messages | length }}]").unwrap();
    let t = ChatTemplate::from_dir(&dir).unwrap().unwrap();
    assert_eq!(t.apply(&[Message::user("hi")], false).unwrap(), "[1]");
    std::fs::write(dir.join("tokenizer_config.json"), "{not json").unwrap();
    let e = ChatTemplate::from_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer_config.json") && e.contains("not a tokenizer config"),
        "{e}"
    );
}
